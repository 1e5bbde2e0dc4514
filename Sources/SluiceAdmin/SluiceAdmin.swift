// SluiceAdmin: the admin listener (health, readiness, metrics, routes, stats page) on a
// reactor thread of Sluice's own, and the access-log writer. Off the data path: the loops
// are reached only through their mailboxes (`Reactor.collect`) and access-log rings.
