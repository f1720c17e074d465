DROP TABLE cache_outbox;
DROP TABLE cache_members;
