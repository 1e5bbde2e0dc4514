import Logging
import SluiceKube
import SluiceRouting
import SluiceTLS

/// The certificates of `sluice kube`'s TLS listener: the files named by `--tls-certificate`
/// and `--tls-key` (in pairs, in order; the first pair is the default certificate), and the
/// slot holding the context built from them. Built at start; built again on SIGHUP, so
/// rotated files (a kubernetes.io/tls Secret volume is updated in place) apply.
struct KubeTLSCertificates {
    let files: [TLSCertificateFiles]
    let slot: KubeTLSContextSlot

    /// Why the files could not be used, naming the flag and file.
    struct LoadError: Error, CustomStringConvertible {
        var description: String
    }

    /// Reads the files and builds the context (blocking).
    static func load(_ files: [TLSCertificateFiles]) throws(LoadError) -> KubeTLSCertificates {
        KubeTLSCertificates(files: files, slot: KubeTLSContextSlot(try build(files)))
    }

    /// SIGHUP: reads the files again. A context that cannot be built is logged and the one in
    /// force stays. Returns whether a new context was put in force.
    @discardableResult
    func reload(logger: Logger) -> Bool {
        do {
            let handle = try Self.build(files)
            let version = slot.replace(with: handle)
            logger.notice("SIGHUP: TLS certificates read again (version \(version)): \(handle.summary)")
            return true
        } catch {
            logger.error("SIGHUP: TLS certificates not reloaded, keeping the ones in force: \(error)")
            return false
        }
    }

    private static func build(_ files: [TLSCertificateFiles]) throws(LoadError) -> TLSContextHandle {
        do {
            return try TLSContextBuilder.build(certificates: files)
        } catch {
            guard files.indices.contains(error.index) else { throw LoadError(description: "TLS: \(error.reason)") }
            let flag =
                error.field == .cert
                ? "--tls-certificate \(files[error.index].cert)" : "--tls-key \(files[error.index].key)"
            throw LoadError(description: "\(flag): \(error.reason)")
        }
    }
}
