-- What PostgreSQL does its own way. Writers run in READ COMMITTED and lock
-- what they read before they write.

-- The transfer's row lock serializes its changes; no row: not found.
-- name: LockTransfer
SELECT 1 FROM transfers WHERE id = $1 FOR UPDATE

-- Concurrent links of one external identity wait for each other, so each
-- reads the history the previous one left.
-- name: LockIdentity
SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))

-- Member writes take their version in turn and commit in that order, so a
-- reader that has seen version v has seen every write below it. One lock
-- for the table (the key is the hash of a name no other lock uses).
-- name: LockMembers
SELECT pg_advisory_xact_lock(hashtext('p2p.members.version'))

-- Writers of models wait for each other (the mode conflicts with itself,
-- not with readers): the first start stores the one model, and ids come
-- into force in commit order.
-- name: LockIdentityModels
LOCK TABLE identity_models IN SHARE ROW EXCLUSIVE MODE
