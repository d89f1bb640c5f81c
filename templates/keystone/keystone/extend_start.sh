#!/bin/bash
# Sourced by kolla_start in the keystone image, as the keystone user.

# Keystone's log directory, inside the shared /var/log/kolla (group kolla,
# setgid, so the group sticks).
log_dir=/var/log/kolla/keystone
if [[ ! -d "${log_dir}" ]]; then
    mkdir -p "${log_dir}"
fi
if [[ $(stat -c %a "${log_dir}") != 755 ]]; then
    chmod 755 "${log_dir}"
fi

# KOLLA_BOOTSTRAP set, even empty: create or migrate the database, then stop.
if [[ -n "${KOLLA_BOOTSTRAP+set}" ]]; then
    keystone-manage db_sync
    exit 0
fi
