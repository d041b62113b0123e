# The action's image: the official OpenWhisk Python 3.11 runtime plus our pinned dependencies and our code.
#
# - OpenWhisk (`wsk action update cron/backup dist/action.zip --docker IMAGE`): the runtime's own entrypoint
#   (/bin/proxy) is kept, so the image behaves exactly like `--kind python:3.11`; the code still arrives as the zip.
# - Code Engine: the job runs `python -m backup.job` from /app (deploy.sh sets that command).
# Build: docker build -t REGISTRY/NAMESPACE/cloudant-cos-backup:TAG .   (see docs/deploy.md)
FROM openwhisk/action-python-v3.11:1.20.0

COPY requirements.txt /tmp/requirements.txt
# zstandard ships a cffi backend (12 MB) beside the C one it loads on CPython: left out, as in the action zip.
RUN pip install --no-cache-dir --requirement /tmp/requirements.txt && rm /tmp/requirements.txt \
    && python -c "import zstandard, pathlib; d = pathlib.Path(zstandard.__file__).parent; [p.unlink() for p in [*d.glob('_cffi.*'), d / 'backend_cffi.py']]" \
    && python -c "import zstandard; assert zstandard.backend == 'cext'"

# Code for Code Engine jobs. An OpenWhisk action imports its own copy first (the zip's directory leads sys.path).
COPY __main__.py /app/__main__.py
COPY backup /app/backup
ENV PYTHONPATH=/app
