-- add_counts() with the same result, adding the few keys of `more` one by one instead of
-- aggregating the union of both objects: every append calls it three times (per type,
-- author and role), and the aggregation's plan had to be started each time. Half the cost
-- per call; 0.06 ms less PostgreSQL CPU per append, measured on the session update alone.
CREATE OR REPLACE FUNCTION add_counts(total jsonb, more jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    counts jsonb := COALESCE(total, '{}'::jsonb);
    key text;
    n text;
    sum bigint;
BEGIN
    IF more IS NULL THEN
        RETURN total;
    END IF;
    FOR key, n IN SELECT * FROM jsonb_each_text(more) LOOP
        sum := COALESCE((counts ->> key)::bigint, 0) + n::bigint;
        IF sum = 0 THEN
            counts := counts - key;
        ELSE
            counts := jsonb_set(counts, ARRAY[key], to_jsonb(sum));
        END IF;
    END LOOP;
    RETURN counts;
END
$$;
