DROP TABLE cache_redis_state;
DROP TABLE cache_outbox;
DROP TABLE cache_members;
