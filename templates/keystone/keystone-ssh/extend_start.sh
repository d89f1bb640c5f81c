#!/bin/bash
# Sourced by kolla_start in the keystone-ssh image (which runs as root, for sshd).

# This container's own host keys, made on its first start.
for key_type in rsa ecdsa ed25519; do
    key=/etc/ssh/ssh_host_${key_type}_key
    if [[ ! -f "${key}" ]]; then
        ssh-keygen -q -t "${key_type}" -N "" -f "${key}"
    fi
done

# sshd's privilege separation directory lives on /run, which may be a tmpfs.
mkdir -p /run/sshd
chmod 0755 /run/sshd

ssh_dir=/var/lib/keystone/.ssh
mkdir -p "${ssh_dir}"
if [[ $(stat -c %U:%G "${ssh_dir}") != keystone:keystone ]]; then
    chown keystone:keystone "${ssh_dir}"
fi
chmod 0700 "${ssh_dir}"
