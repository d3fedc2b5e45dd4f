#!/usr/bin/env bash
# Makes OpenSSH's server and client tools available for the pipeline's SSH tests
# (tests/test_pipeline_ssh.py), which start their own sshd instances on 127.0.0.1, each with its
# own config, host key and authorized keys. This only installs the programs (apt-get, as root)
# and creates sshd's privilege-separation folder; it starts no server. Idempotent: a machine
# that has them already is left as it is.
set -euo pipefail

have() { [[ -x /usr/sbin/sshd ]] || command -v sshd >/dev/null 2>&1; }

if ! have || ! command -v ssh-keygen >/dev/null 2>&1; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "setup_sshd: sshd or ssh-keygen is missing and this is not root: install openssh-server" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the package from starting the system's sshd on port 22.
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
  if [[ $created_policy -eq 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
fi

if [[ "$(id -u)" -eq 0 ]]; then
  mkdir -p /run/sshd
  chmod 0755 /run/sshd
fi
sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)
echo "setup_sshd: $sshd_bin ($(ssh -V 2>&1))"
