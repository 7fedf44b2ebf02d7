-- search_document() as PL/pgSQL, with the same result. As an SQL function the generated
-- column inlined it again at the start of every INSERT statement (parsing the bodies of it
-- and of the functions it calls), about 0.3 ms of PostgreSQL's CPU per statement, half of a
-- one-event append's INSERT; PL/pgSQL plans its expression once per connection. Per row
-- both cost the same (docs/architecture.md, Search). Stored vectors stay as they are.
CREATE OR REPLACE FUNCTION search_document(content_text text, data jsonb) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN setweight(to_tsvector('english', CASE
               WHEN has_cjk(content_text) THEN cjk_bigrams(left(content_text, 65536))
               ELSE left(COALESCE(content_text, ''), 65536)
           END), 'A')
        || setweight(to_tsvector('english', search_strings(data)), 'B');
END
$$;
