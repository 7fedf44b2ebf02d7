-- Full-text search over event text, in English, Chinese and Japanese.
--
-- PostgreSQL's parsers do not split Chinese or Japanese into words: a whole sentence becomes
-- one token, and a word inside it is never found. cjk_bigrams() rewrites every run of CJK
-- characters as its overlapping two-character pieces ("迁移失败" -> "迁移 移失 失败"), which
-- the parser then takes as words; queries get the same treatment (search_query()), with the
-- pieces of a run as a phrase, so a CJK word matches exactly where its characters stand
-- together. Other text goes through the english configuration (stemming, stop words).
CREATE FUNCTION cjk_bigrams(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN t !~ '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]' THEN t
        ELSE (
            SELECT string_agg(
                CASE
                    WHEN run[1] !~ '^[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]'
                         OR length(run[1]) = 1
                    THEN run[1]
                    -- Pairs of neighbouring characters, in order. Not substr() at each
                    -- position: on multibyte text that walks from the start every time.
                    ELSE (SELECT string_agg(pair, ' ' ORDER BY i) FROM (
                              SELECT c || lead(c) OVER (ORDER BY i) AS pair, i
                              FROM regexp_split_to_table(run[1], '') WITH ORDINALITY AS chars(c, i)
                          ) AS pairs WHERE pair IS NOT NULL)
                END, ' ' ORDER BY n)
            FROM regexp_matches(
                t,
                '([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]+'
                '|[^\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]+)',
                'g') WITH ORDINALITY AS runs(run, n)
        )
    END
$$;

-- The strings of a JSON document, space-separated, ready for to_tsvector (see above).
CREATE FUNCTION search_strings(data jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN data IS NULL THEN ''
        WHEN data::text ~ '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]'
        THEN cjk_bigrams(left(regexp_replace(
                 jsonb_path_query_array(data, 'strict $.** ? (@.type() == "string")')::text,
                 '\\(u[0-9a-fA-F]{4}|.)', ' ', 'g'), 65536))
        ELSE left(regexp_replace(
                 jsonb_path_query_array(data, 'strict $.** ? (@.type() == "string")')::text,
                 '\\(u[0-9a-fA-F]{4}|.)', ' ', 'g'), 65536)
    END
$$;

-- What search sees of an event: the first 65,536 characters of its content text (weight A)
-- and of the strings in its data (weight B: tool arguments, streamed deltas, messages
-- recorded in data); a tsvector cannot hold more than 1 MB. One expression, no subquery, so
-- that PostgreSQL inlines it: a generated column calls it for every insert. cjk_bigrams() is
-- only called for text that has CJK characters: a call costs more than the check. The
-- strings of data come as a JSON array's text; their escapes (\n, \u0007) become spaces.
CREATE FUNCTION search_document(content_text text, data jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('english', CASE
               WHEN content_text ~ '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]'
               THEN cjk_bigrams(left(content_text, 65536))
               ELSE left(COALESCE(content_text, ''), 65536)
           END), 'A')
        || setweight(to_tsvector('english', search_strings(data)), 'B')
$$;

-- Indexed on write: the vector is a stored generated column, computed in the inserting
-- statement, so an event is searchable as soon as its append commits.
ALTER TABLE events DROP COLUMN search_vector;
ALTER TABLE events
    ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (search_document(content_text, data)) STORED;
CREATE INDEX events_search_idx ON events USING gin (search_vector);
