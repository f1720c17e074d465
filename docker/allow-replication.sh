#!/bin/sh
# Run once by the postgres image at initialisation: lets the replica
# container stream from this server (password-checked, like every client).
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
