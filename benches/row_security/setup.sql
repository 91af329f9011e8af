-- Row security benchmark data (scripts/bench-row-security): 100,000 rows over 1,000 owners,
-- RLS enabled and forced, a policy on request.jwt.claim.sub, a role to run as.
DROP SCHEMA IF EXISTS rls_bench CASCADE;
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rls_bench_user') THEN
    DROP OWNED BY rls_bench_user; DROP ROLE rls_bench_user;
  END IF;
END $$;
CREATE SCHEMA rls_bench;
CREATE TABLE rls_bench.orders (id int PRIMARY KEY, owner text NOT NULL, total numeric(10,2));
INSERT INTO rls_bench.orders SELECT g, 'user-' || (g % 1000), g * 1.5 FROM generate_series(1, 100000) g;
CREATE INDEX ON rls_bench.orders (owner);
ALTER TABLE rls_bench.orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE rls_bench.orders FORCE ROW LEVEL SECURITY;
CREATE POLICY own ON rls_bench.orders USING (owner = current_setting('request.jwt.claim.sub', true));
CREATE ROLE rls_bench_user NOLOGIN;
GRANT USAGE ON SCHEMA rls_bench TO rls_bench_user;
GRANT SELECT ON rls_bench.orders TO rls_bench_user;
VACUUM ANALYZE rls_bench.orders;
