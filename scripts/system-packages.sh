# Debian packages the deployment checks need, pinned to the versions they were checked with.
# Sourced by scripts/test.sh; installs only what is missing (apt-get needs root, as on CI).
#   promtool (prometheus): rule tests, dashboard queries, `promtool check metrics` on a scrape
#   alertmanager (prometheus-alertmanager): the notifier's tests post to its real v2 API
#   chromium: the console's browser tests (Playwright drives it)
#   podman, buildah, runc, podman-compose: build the image FROM scratch and run the compose
#   stack and the rendered chart without a container daemon

LLMOPT_DEBIAN_PACKAGES=(
  "prometheus=2.42.0+ds-5+deb12u1"
  "prometheus-alertmanager=0.25.0-1+b4"
  "chromium=156.0.8078.114-1~deb12u1"
  "podman=4.3.1+ds1-8+deb12u1+b3"
  "buildah=1.28.2+ds1-3+deb12u1+b3"
  "runc=1.1.5+ds1-1+deb12u1"
  "podman-compose=1.0.3-3"
)

llmopt_system_packages() {
  local missing=() spec name
  for spec in "${LLMOPT_DEBIAN_PACKAGES[@]}"; do
    name=${spec%%=*}
    dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed" || missing+=("$spec")
  done
  if (( ${#missing[@]} == 0 )); then
    return
  fi
  log "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    log "not root: install them with: sudo apt-get install ${missing[*]}"
    return 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
