#!/bin/sh
# Installs the Debian packages the tests start for real, when missing:
# OpenSSH's sshd (integration tests against real sshd) and ssh-keygen, and
# monit (watchdog checks run the real `monit -t`), HAProxy and socat (traffic
# cutover through the real runtime API), curl and wget (hosts pull artifacts),
# chromium (the timeline page), tmux (the live progress view), and
# prometheus, redis-server and memcached (soak metric checks).
set -eu
missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ssh-keygen >/dev/null 2>&1 || missing="$missing openssh-client"
command -v tar >/dev/null 2>&1 || missing="$missing tar"
# Template quoting is checked against both shells a login shell may be.
[ -x /bin/dash ] || missing="$missing dash"
[ -x /bin/bash ] || missing="$missing bash"
[ -x /usr/bin/python3 ] || missing="$missing python3"
command -v monit >/dev/null 2>&1 || missing="$missing monit"
[ -x /usr/sbin/haproxy ] || missing="$missing haproxy"
command -v socat >/dev/null 2>&1 || missing="$missing socat"
# Bastion tests put hosts in a network namespace (ip netns).
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
# Hosts fetch pulled artifacts ([artifact] url) with curl or wget.
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v wget >/dev/null 2>&1 || missing="$missing wget"
# The run timeline page is checked in a real browser (headless chromium).
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
# The live progress view is checked on a real terminal (tmux).
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
# Soak metric checks run against real servers (internal/metricstest); the
# tests start their own on free 127.0.0.1 ports, never the system services.
[ -x /usr/bin/prometheus ] || missing="$missing prometheus"
[ -x /usr/bin/redis-server ] || missing="$missing redis-server"
[ -x /usr/bin/memcached ] || missing="$missing memcached"
if [ -z "$missing" ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "missing packages:$missing; install them (as root: apt-get install -y$missing)" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
