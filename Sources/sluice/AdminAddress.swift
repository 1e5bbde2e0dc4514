import ArgumentParser
import SluiceRouting

/// `--admin-address`: `HOST:PORT`, or `""` / `off` for no admin listener.
enum AdminAddress {
    static func parse(_ text: String) throws -> SluiceRouting.SocketAddress? {
        if text.isEmpty || text == "off" { return nil }
        switch SocketAddress.parse(text) {
        case .success(let address): return address
        case .failure(let error): throw ValidationError("--admin-address '\(text)': \(error)")
        }
    }
}
