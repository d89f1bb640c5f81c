#!/bin/bash
# Sourced by kolla_start in every heat image, as the heat user.

# Heat's log directory, inside the shared /var/log/kolla (group kolla,
# setgid, so the group sticks).
log_dir=/var/log/kolla/heat
if [[ ! -d "${log_dir}" ]]; then
    mkdir -p "${log_dir}"
fi
if [[ $(stat -c %a "${log_dir}") != 755 ]]; then
    chmod 755 "${log_dir}"
fi

# The image's own part (heat-api replaces it).
. /usr/local/bin/kolla_heat_extend_start
