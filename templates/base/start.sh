#!/bin/bash
# kolla_start: the CMD of every kolla-oci image (installed by base/Dockerfile.j2).
#
# 1. kolla_set_configs runs as root through sudo, keeping the environment (so
#    KOLLA_CONFIG_STRATEGY reaches it): it installs the service configuration
#    described by /var/lib/kolla/config_files/config.json and writes the
#    service command to /run_command. Running it as root keeps the installed
#    files out of the service user's hands.
# 2. kolla_copy_cacerts (also root) installs the operator's CA certificates.
# 3. The image's hook, kolla_extend_start (found on PATH), is *sourced*: it may
#    prepare directories, set ARGS, or run a bootstrap and `exit 0`. Setting
#    KOLLA_SKIP_EXTEND_START, even to an empty value, skips it.
# 4. The service command replaces this shell. CMD and ARGS are expanded
#    unquoted on purpose: /run_command holds a plain command line that is
#    split on whitespace (no shell quoting), as in Kolla.
#
# KOLLA_TEST_ROOT (tests only) makes /run_command be read below that
# directory; kolla_set_configs and kolla_copy_cacerts honour it too and refuse
# it when invoked through sudo by a non-root user.
set -o errexit -o nounset -o pipefail -o xtrace

sudo -E kolla_set_configs
CMD=$(cat "${KOLLA_TEST_ROOT:-}/run_command")
ARGS=""

sudo kolla_copy_cacerts

if [[ -z "${KOLLA_SKIP_EXTEND_START+set}" ]]; then
    . kolla_extend_start
fi

echo "Running command: '${CMD}${ARGS:+ ${ARGS}}'"
# shellcheck disable=SC2086 # word splitting is the contract (see 4. above)
exec ${CMD} ${ARGS}
