-- API keys (store/keys.py). Keys are looked up by the SHA-256 of the key presented.

-- name: insert_key
INSERT INTO api_keys (id, name, key_hash, apps, role, expire_time)
VALUES (%(id)s, %(name)s, %(key_hash)s, %(apps)s, %(role)s, %(expire_time)s)
RETURNING *;

-- name: select_usable_key
-- The key with this hash, unless it is revoked or expired.
SELECT id, name, apps, role, expire_time FROM api_keys
WHERE key_hash = %(key_hash)s AND revoke_time IS NULL
  AND (expire_time IS NULL OR expire_time > now());

-- name: select_key_is_usable
-- Whether the key with this id is still neither revoked nor expired.
SELECT EXISTS (
    SELECT 1 FROM api_keys
    WHERE id = %(id)s AND revoke_time IS NULL AND (expire_time IS NULL OR expire_time > now())
) AS usable;

-- name: list_keys
SELECT * FROM api_keys ORDER BY create_time, id;

-- name: revoke_key
UPDATE api_keys SET revoke_time = now()
WHERE id = %(id)s AND revoke_time IS NULL
RETURNING *;

-- name: touch_key
-- When a key was last used, kept roughly: at most once a minute per key.
UPDATE api_keys SET last_used_time = now()
WHERE id = %(id)s AND (last_used_time IS NULL OR last_used_time < now() - interval '1 minute');
