-- Worker identity: the SHA-256 (hex) of each worker's session secret; '' for workers registered
-- before (they must register again).
ALTER TABLE workers ADD COLUMN secret_hash TEXT NOT NULL DEFAULT '';
