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

# KOLLA_BOOTSTRAP set, even empty: one-off bootstrap run, then stop. This
# image carries no database schema, so there is nothing to migrate.
if [[ -n "${KOLLA_BOOTSTRAP+set}" ]]; then
    echo "keystone: nothing to bootstrap in this image"
    exit 0
fi
