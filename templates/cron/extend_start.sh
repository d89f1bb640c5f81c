#!/bin/bash
# Sourced by kolla_start in the cron image (which runs as root, for cron).
#
# KOLLA_LOGROTATE_SCHEDULE (hourly, daily, weekly or monthly) moves the
# logrotate job to that cron directory; Debian ships it as a daily job.

current=""
for period in hourly daily weekly monthly; do
    if [[ -e "/etc/cron.${period}/logrotate" ]]; then
        current=${period}
        break
    fi
done

wanted=${KOLLA_LOGROTATE_SCHEDULE:-}
if [[ -z "${current}" ]]; then
    echo "logrotate is not run by cron in this image"
elif [[ -n "${wanted}" ]]; then
    case "${wanted}" in
        hourly|daily|weekly|monthly) ;;
        *) echo "KOLLA_LOGROTATE_SCHEDULE must be hourly, daily, weekly or monthly, not '${wanted}'" >&2
           exit 1 ;;
    esac
    if [[ "${wanted}" != "${current}" ]]; then
        mv "/etc/cron.${current}/logrotate" "/etc/cron.${wanted}/logrotate"
        current=${wanted}
    fi
fi
if [[ -n "${current}" ]]; then
    echo "logrotate runs ${current}"
fi
