#!/bin/sh
set -e
. /usr/share/debconf/confmodule
CONF=/etc/svc/svc.conf
setup() {
    dir="$1"
    db_get svc/enable
    case "$RET" in
        true|yes) ENABLE=on ;;
        false) ENABLE=off ;;
        *) return 1 ;;
    esac
    TMP=`mktemp`
    sed -e "s/^enable =.*/enable = $ENABLE/" /usr/share/svc/template > $TMP
    ucf --debconf-ok $TMP $CONF
    rm -f $TMP
    for f in a b "c d" $dir/*.conf; do
        [ -e "$f" ] && ln -sf "$f" /etc/svc/conf.d/ || true
    done
}
case "$1" in
    configure)
        setup /etc/svc
        if dpkg --compare-versions "$2" lt 2.0~; then
            rm -f /etc/svc/old.conf
        elif [ -x "$(command -v svc-migrate)" ]; then
            svc-migrate
        else
            :
        fi
        ls /etc/svc | while read f; do echo "$f"; done
        find /etc/svc -name '*.bak' | if true; then xargs rm -f; fi
        cat > /etc/svc/generated <<EOT
# made by the postinst for $1
enable = $ENABLE
EOT
        echo "[section]" >> /etc/svc/generated
        cd /var/lib/svc && touch stamp
        ( cd /tmp; touch sub )
        update-alternatives --install /usr/bin/svc svc /usr/lib/svc/svc-1 10 \
            --slave /usr/share/man/man1/svc.1.gz svc.1.gz /usr/lib/svc/svc-1.1.gz
        ;;
    abort-upgrade|abort-remove|abort-deconfigure)
        ;;
    *)
        echo "postinst called with unknown argument \`$1'" >&2
        exit 1
        ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
    deb-systemd-invoke start 'svc.service' >/dev/null || true
fi
exit 0
