"""Platform plumbing: how to reach each platform (``sandbox``: supervisor, fault proxy, nftables; ``kubernetes``: the
API server; ``chaosmesh``: Chaos Mesh's objects and their validation, with ``chaosmesh_webhook``, the rules of Chaos
Mesh's admission webhook, as its part). No module here imports another platform's; fault kinds
(``drillbit.faults.pod_kill`` and the others) combine them.
"""
