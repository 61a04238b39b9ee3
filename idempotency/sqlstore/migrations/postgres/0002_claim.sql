-- steadfast idempotency store, PostgreSQL, migration 0002.
-- The insert of a claim as a function, so that the claim statement can
-- read a key's row and insert one only when there is none in one round
-- trip without a data-modifying CTE (whose INSERT would cost a replay as
-- much again as the read). Replaced in place by later versions; dropped
-- with DROP FUNCTION {{"{{.Claim}}"}}(TEXT, TEXT, BIGINT, BIGINT, BIGINT).
-- The caller computes the times (on the database's clock, in the same
-- statement). Returns the token when it inserted the claim, NULL when the
-- key has a row (one the claim's snapshot did not see: the store claims
-- again).
CREATE OR REPLACE FUNCTION {{.Claim}}(
    p_key TEXT, p_fingerprint TEXT, p_token BIGINT, p_lease_until BIGINT, p_expires_at BIGINT
) RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_token BIGINT;
BEGIN
    INSERT INTO {{.Table}}
        (idem_key, fingerprint, status, token, lease_until, expires_at, response)
    VALUES (p_key, p_fingerprint, 1, p_token, p_lease_until, p_expires_at, NULL)
    ON CONFLICT (idem_key) DO NOTHING
    RETURNING token INTO v_token;
    RETURN v_token;
END
$$;
