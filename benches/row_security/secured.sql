\set id random(1, 100000)
\startpipeline
BEGIN;
SET LOCAL ROLE "rls_bench_user";
SELECT set_config('request.jwt.claims', '{"sub":"user-' || (:id % 1000) || '","role":"viewer"}', true), set_config('request.jwt.claim.sub', 'user-' || (:id % 1000), true), set_config('request.jwt.claim.role', 'viewer', true), set_config('request.jwt.claim.email', 'a@example.com', true);
\endpipeline
SELECT id, owner, total FROM rls_bench.orders WHERE id = :id;
COMMIT;
