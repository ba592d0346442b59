-- What SQLite does its own way. Every write transaction holds the
-- database's write lock from BEGIN IMMEDIATE, so reads inside it are the
-- latest and nothing needs a lock of its own.

-- No row: not found.
-- name: LockTransfer
SELECT 1 FROM transfers WHERE id = $1

-- Nothing to lock: the write lock is held.
-- name: LockIdentity

-- Nothing to lock: the write lock is held.
-- name: LockMembers

-- Nothing to lock: the write lock is held.
-- name: LockIdentityModels
