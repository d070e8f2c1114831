#!/bin/sh
# Build time only (docker/Dockerfile mounts it at /opt/tools/install): pip install ARGS into
# /opt/venv with the tools stage's pip (pip --python), so the image's venv carries no pip.
# Then drop test suites, C headers (include/), type stubs and bytecode (docker/warm_up.py
# compiles again what train and serve import; licences in *.dist-info stay), and strip symbols
# from the shared libraries this step added, only those (-cnewer): a lower layer's file
# rewritten here would be stored twice. Vendored libraries (*.libs/) are left alone: auditwheel
# rewrote them with patchelf and strip breaks them ("ELF load command address/offset not
# page-aligned").
set -eu
if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi
site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
touch /tmp/install-start
/opt/tools/pip/bin/python -m pip --python /opt/venv/bin/python install "$@"
find "$site" -depth -type d \( -name tests -o -name include -o -name __pycache__ \) \
    ! -path '*.dist-info/*' -exec rm -rf {} +
find "$site" -name '*.pyi' -delete
if [ -x /opt/tools/bin/strip ]; then
    before=$(du -sm "$site" | cut -f1)
    find "$site" -path "$site/*.libs" -prune -o -type f -cnewer /tmp/install-start \
        \( -name '*.so' -o -name '*.so.*' \) -print \
        | LD_LIBRARY_PATH=/opt/tools/lib xargs -r /opt/tools/bin/strip --strip-unneeded 2>/dev/null || true
    echo "strip: site-packages $before MB -> $(du -sm "$site" | cut -f1) MB"
fi
rm -f /tmp/install-start
