// TLS contexts for termination (certificates, SNI selection, ALPN, resumption).
#pragma once
