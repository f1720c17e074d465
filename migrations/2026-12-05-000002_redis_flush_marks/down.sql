DROP TABLE cache_redis_marks;
