#!/bin/sh
set -e
quiet="--quiet"
if [ "$1" = configure ]; then
    if ! getent passwd svc > /dev/null; then
        adduser --system $quiet --home /var/lib/svc --no-create-home \
            --shell /bin/sh --group --gecos "A service" svc
    fi
    if ! id -Gn svc | grep -qw svc; then
        adduser $quiet svc svc
    fi
    if [ "`id -u svc`" -eq 0 ]; then
        echo "svc must not be root" >&2
        exit 1
    fi
    mkdir -p /var/lib/svc
    su -s /bin/sh svc -c "test -O /var/lib/svc &&
            test -G /var/lib/svc" || \
        chown svc:svc /var/lib/svc
    if [ -z "$2" ] && getent group ssl-cert >/dev/null; then
        if ! id -Gn svc 2> /dev/null | grep -qw ssl-cert; then
            usermod -a -G ssl-cert svc
        fi
    fi
    dpkg-statoverride --list /var/log/svc >/dev/null 2>&1 || \
        dpkg-statoverride --update --add svc adm 2750 /var/log/svc
fi
#DEBHELPER#
exit 0
