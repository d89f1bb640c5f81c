#!/bin/bash
# Sourced (through heat-base's kolla_extend_start) in the heat-api image.

# KOLLA_BOOTSTRAP set, even empty: create or migrate the database, then stop.
if [[ -n "${KOLLA_BOOTSTRAP+set}" ]]; then
    heat-manage db_sync
    exit 0
fi
