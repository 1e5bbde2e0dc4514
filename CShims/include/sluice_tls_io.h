// Per-connection TLS sessions driven non-blocking from an event loop.
#pragma once
