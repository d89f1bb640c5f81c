#!/bin/bash
# Sourced (through heat-base's kolla_extend_start) in the heat-api image.

# KOLLA_BOOTSTRAP set, even empty: one-off bootstrap run, then stop. This
# image carries no database schema, so there is nothing to migrate.
if [[ -n "${KOLLA_BOOTSTRAP+set}" ]]; then
    echo "heat-api: nothing to bootstrap in this image"
    exit 0
fi
