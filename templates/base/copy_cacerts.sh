#!/bin/bash
# kolla_copy_cacerts: make the operator's CA certificates trusted inside the
# container. kolla_start runs it as root (through sudo) on every start.
#
# Certificates are taken from /var/lib/kolla/config_files/ca-certificates/ or,
# when that directory does not exist, /var/lib/kolla/share/ca-certificates/.
# Each is installed as kolla-customca-<name> in the distribution's anchor
# directory. Certificates installed by an earlier start are removed first, so
# a CA the operator withdrew stops being trusted; the trust store is rebuilt
# only when something changed.
#
# KOLLA_TEST_ROOT (tests only): operate below that directory instead of /, and
# skip the trust store rebuild (it would touch the real system). Refused when a
# non-root user invokes us through sudo.
set -o errexit -o nounset -o pipefail

# True when we run as root on behalf of a non-root user (through sudo):
# SUDO_UID can be forged by the caller (sudoers' setenv), the real uid of our
# parent (sudo keeps the caller's) cannot; unreadable counts as unprivileged.
invoked_by_unprivileged_sudo() {
    local parent_uid
    if [[ -n "${SUDO_UID:-}" && "${SUDO_UID}" != 0 ]]; then
        return 0
    fi
    if [[ ${EUID} != 0 ]]; then
        return 1
    fi
    parent_uid=$(awk '$1 == "Uid:" { print $2 }' "/proc/${PPID}/status" 2>/dev/null) || true
    [[ "${parent_uid}" != 0 ]]
}

root=""
if [[ -n "${KOLLA_TEST_ROOT:-}" ]]; then
    if invoked_by_unprivileged_sudo; then
        echo "kolla_copy_cacerts: KOLLA_TEST_ROOT is for tests and is refused under sudo" >&2
        exit 1
    fi
    root=${KOLLA_TEST_ROOT%/}
fi

anchors=""
update=""
if [[ -e "${root}/etc/debian_version" ]]; then
    anchors="${root}/usr/local/share/ca-certificates"
    update=update-ca-certificates
elif [[ -e "${root}/etc/redhat-release" ]]; then
    anchors="${root}/etc/pki/ca-trust/source/anchors"
    update=update-ca-trust
fi

src=""
for candidate in "${root}/var/lib/kolla/config_files/ca-certificates" \
                 "${root}/var/lib/kolla/share/ca-certificates"; do
    if [[ -d "${candidate}" ]]; then
        src=${candidate}
        break
    fi
done

shopt -s nullglob
certs=()
if [[ -n "${src}" ]]; then
    for cert in "${src}"/*; do
        if [[ -f "${cert}" ]]; then
            certs+=("${cert}")
        fi
    done
fi

if [[ -z "${anchors}" ]]; then
    if (( ${#certs[@]} > 0 )); then
        echo "kolla_copy_cacerts: unknown distribution, cannot install ${certs[*]}" >&2
        exit 1
    fi
    exit 0
fi

changed=false
previous=("${anchors}"/kolla-customca-*)
if (( ${#previous[@]} > 0 )); then
    rm -f -- "${previous[@]}"
    changed=true
fi
for cert in "${certs[@]}"; do
    mkdir -p "${anchors}"
    cp -- "${cert}" "${anchors}/kolla-customca-$(basename -- "${cert}")"
    changed=true
done

if [[ "${changed}" == true ]]; then
    if [[ -n "${root}" ]]; then
        echo "kolla_copy_cacerts: not running ${update} under KOLLA_TEST_ROOT"
    else
        "${update}"
    fi
fi
