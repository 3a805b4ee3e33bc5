"""`bake serve`: the seed server of one or more baked clusters, and the reports of their first boots.

Modules by concern, from the node to the edge:

- `protocol`: what a report is (body, signature, per-node key derivation, limits); shared by the
  renderer of the node's files and the server, pure;
- `tls`: the seed CA and the server certificate the bundle holds for an https:// URL, pure;
- `nodefiles`: the files a node gets when the profile names `cluster.seed.reportUrl`;
- `catalog`: what one server serves, read from output trees and their secrets bundles;
- `routing`: which seed file a request may have (MAC, source address, the control-plane rule), pure;
- `store`: the reports' state in SQLite (replay refusal, survives restarts);
- `page`: the live page and the state as JSON; `status`: the same in a terminal (`bake status`);
- `server`: the HTTP(S) edge (stdlib ThreadingHTTPServer), logging every request.

Importing this package imports nothing heavy: the bake reads `protocol`, `tls` and `nodefiles` only.
"""
