\set id random(1, 100000)
SELECT id, owner, total FROM rls_bench.orders WHERE id = :id AND owner = 'user-' || (:id % 1000);
