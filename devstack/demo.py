"""The README's first command: start the embedded local stack, back up a sample database, verify it.

    scripts/demo.sh [--docs N]

pouchdb-server stands in for Cloudant/CouchDB and SeaweedFS for IBM COS; both run on 127.0.0.1 and
are stopped at the end. Logs go to stderr; the backup's result is the last line on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import quote

from ibm_botocore.exceptions import ClientError

from backup.action import main
from backup.log import Log
from devstack import LocalStack, PouchServer, SeaweedS3

ANIMALS = ["aardvark", "badger", "cat", "dog", "elephant", "fox", "giraffe", "hippo", "ibis", "jaguar"]
SAMPLE_DB, BUCKET = "animals", "backups"


def load_sample(couch: PouchServer, db: str, docs: int) -> bool:
    """Create ``db`` holding ``docs`` sample documents; False (and nothing written) if it exists already."""
    if couch.http.head(f"{couch.url}/{quote(db, safe='')}", timeout=30).status_code == 200:
        return False
    couch.create_db(db)
    couch.bulk_docs(db, (
        {"_id": f"{ANIMALS[i % len(ANIMALS)]}-{i:06d}", "name": ANIMALS[i % len(ANIMALS)], "legs": 4 - (i % 3 == 0) * 2,
         "notes": "sample document for the cloudant-cos-backup demo"}
        for i in range(docs)
    ))
    return True


def create_bucket(s3: SeaweedS3, bucket: str) -> None:
    """Create ``bucket`` unless this server already has it (a kept data directory)."""
    try:
        s3.client().create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def stack_params(stack: LocalStack, bucket: str) -> dict[str, str]:
    """The parameters (environment variables) that point the tool at ``stack`` and ``bucket``."""
    assert stack.couch.admin is not None  # LocalStack always makes one
    return {
        "CLOUDANT_URL": stack.couch.url,
        "CLOUDANT_USERNAME": stack.couch.admin[0], "CLOUDANT_PASSWORD": stack.couch.admin[1],
        "COS_ENDPOINT": stack.s3.endpoint, "COS_BUCKET": bucket,
        "COS_ACCESS_KEY_ID": stack.s3.access_key, "COS_SECRET_ACCESS_KEY": stack.s3.secret_key,
    }


def run(docs: int) -> int:
    log = Log(stream=sys.stderr)
    with LocalStack() as stack:
        load_sample(stack.couch, SAMPLE_DB, docs)
        create_bucket(stack.s3, BUCKET)
        params = {**stack_params(stack, BUCKET), "CLOUDANT_DB": SAMPLE_DB}
        result = main(params, log=log)
        if "error" in result:
            print(json.dumps(result))
            return 1
        verified = main({**params, "OPERATION": "verify", "COS_KEY": result["key"]}, log=log)
        result["verified"] = verified.get("ok", False)
        print(json.dumps(result))
        return 0 if verified.get("ok") else 1


def cli() -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo.sh", description="back up a sample database on the local stack")
    parser.add_argument("--docs", type=int, default=1000, help="documents in the sample database (default 1000)")
    return run(parser.parse_args().docs)


if __name__ == "__main__":
    sys.exit(cli())
