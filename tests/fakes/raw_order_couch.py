"""A read-only CouchDB stand-in for one behaviour pouchdb-server cannot show: `_all_docs` in CouchDB's order,
the raw UTF-8 bytes of the ids (pouchdb-server sorts UTF-16 code units and drops ids it cannot page).

It serves `GET /` (server info), `GET /{db}` (database info with an opaque update_seq and
instance_start_time, as CouchDB 3.5 answers) and `POST /{db}/_all_docs` with `include_docs`, `start_key`,
`end_key` and `limit` in the JSON body (as the ibmcloudant SDK sends them), on 127.0.0.1. Tests only.
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any
from urllib.parse import unquote


class RawOrderCouch:
    def __init__(self, db: str, docs: list[dict[str, Any]]) -> None:
        self.db = db
        self.docs = sorted(({**d, "_rev": "1-" + "a" * 32} for d in docs), key=lambda d: d["_id"].encode("utf-8"))
        self.requests: list[dict[str, Any]] = []  # the `_all_docs` bodies received
        couch = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, value: Any) -> None:
                body = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = unquote(self.path.split("?")[0]).strip("/")
                if path == "":
                    self._answer(200, {"couchdb": "Welcome", "version": "3.5.0"})
                elif path == couch.db:
                    self._answer(200, {"db_name": couch.db, "doc_count": len(couch.docs), "doc_del_count": 0,
                                       "update_seq": f"{len(couch.docs)}-g1AAAAraw", "instance_start_time": "1796597502",
                                       "props": {}})
                else:
                    self._answer(404, {"error": "not_found", "reason": "Database does not exist."})

            def do_POST(self) -> None:  # noqa: N802
                path = unquote(self.path.split("?")[0]).strip("/")
                query = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if path != f"{couch.db}/_all_docs":
                    self._answer(404, {"error": "not_found", "reason": "missing"})
                    return
                couch.requests.append(query)
                self._answer(200, couch.all_docs(query))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def all_docs(self, query: dict[str, Any]) -> dict[str, Any]:
        start = query.get("start_key", query.get("startkey"))
        end = query.get("end_key", query.get("endkey"))
        rows = [d for d in self.docs
                if (start is None or d["_id"].encode() >= start.encode()) and (end is None or d["_id"].encode() <= end.encode())]
        if "limit" in query:
            rows = rows[: int(query["limit"])]
        return {"total_rows": len(self.docs), "offset": 0, "rows": [
            {"id": d["_id"], "key": d["_id"], "value": {"rev": d["_rev"]},
             **({"doc": d} if query.get("include_docs") else {})} for d in rows]}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
