DROP TABLE slug_counters;
