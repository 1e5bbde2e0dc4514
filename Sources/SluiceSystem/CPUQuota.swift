import CShims
import Glibc

/// The CPU bandwidth limit of this process's cgroup: `quota` microseconds of CPU time per
/// `period`. A pod with `limits.cpu: 2` gets 200000/100000; the affinity mask still shows
/// every CPU of the node, so loops sized by the mask alone would be throttled.
public struct CPUQuota: Equatable, Sendable, CustomStringConvertible {
    public var quota: Int
    public var period: Int
    /// Where it was read: `cgroup cpu.max` (v2) or `cgroup cpu.cfs_quota_us` (v1).
    public var source: String

    public init(quota: Int, period: Int, source: String) {
        self.quota = quota
        self.period = period
        self.source = source
    }

    /// The CPUs the quota is worth, rounded up (1.5 CPUs keep two loops busy part-time).
    public var cpus: Int { max((quota + period - 1) / period, 1) }

    /// `cgroup cpu.max 200000/100000`.
    public var description: String { "\(source) \(quota)/\(period)" }

    /// A cgroup v2 `cpu.max` file: `max 100000` (no limit: nil) or `200000 100000`. Nil too
    /// for text that is not two positive numbers (a file of another format says nothing).
    public static func parseCPUMax(_ text: String) -> CPUQuota? {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        guard fields.count == 2, let quota = Int(fields[0]), let period = Int(fields[1]), quota > 0, period > 0
        else { return nil }
        return CPUQuota(quota: quota, period: period, source: "cgroup cpu.max")
    }

    /// cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`: a quota of -1 is no limit (nil).
    public static func parseCFS(quota: String, period: String) -> CPUQuota? {
        let trim: (String) -> Substring = { $0.drop(while: \.isWhitespace).prefix(while: { !$0.isWhitespace }) }
        guard let q = Int(trim(quota)), let p = Int(trim(period)), q > 0, p > 0 else { return nil }
        return CPUQuota(quota: q, period: p, source: "cgroup cpu.cfs_quota_us")
    }

    /// The v2 path of this process's cgroup from `/proc/self/cgroup` (`0::/kubepods/...`),
    /// or nil when it has no v2 line.
    public static func parseSelfCgroup(_ text: String) -> String? {
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            return String(line.dropFirst(3))
        }
        return nil
    }

    /// The tightest quota that applies to this process, or nil when none does. Under cgroup
    /// v2 every `cpu.max` from the process's own cgroup up to `root` counts (a parent's limit
    /// binds its children; inside a container with its own cgroup namespace the path is `/`);
    /// else the v1 `cpu` controller at `root`. `root` is `/sys/fs/cgroup`; tests point it at
    /// a directory of their own (and then `/proc/self/cgroup` is not read). Blocks on file
    /// reads; call at start-up.
    public static func current(root: String = "/sys/fs/cgroup") -> CPUQuota? {
        let own = root == "/sys/fs/cgroup" ? readText("/proc/self/cgroup").flatMap(parseSelfCgroup) : nil
        var path = own ?? "/"
        var tightest: CPUQuota?
        var sawCPUMax = false
        while true {
            let directory = path == "/" ? root : root + path
            if let text = readText(directory + "/cpu.max") {
                sawCPUMax = true
                if let quota = parseCPUMax(text), quota.cpus < tightest?.cpus ?? Int.max { tightest = quota }
            }
            if path == "/" { break }
            path = parent(of: path)
        }
        if sawCPUMax { return tightest }
        for controller in ["cpu", "cpu,cpuacct"] {
            let directory = root + "/" + controller
            if let quota = readText(directory + "/cpu.cfs_quota_us"),
                let period = readText(directory + "/cpu.cfs_period_us")
            {
                return parseCFS(quota: quota, period: period)
            }
        }
        return nil
    }

    /// `/a/b` → `/a`, `/a` → `/`.
    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// A small file's text (at most 4 KiB), or nil when it cannot be read.
    static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { return nil }
        return String(decoding: bytes[0..<n], as: UTF8.self)
    }
}

/// How many loops to run when nothing names a number: the CPUs of the affinity mask, no more
/// than the cgroup quota allows, at least one.
public struct WorkerDefault: Equatable, Sendable {
    public var count: Int
    /// Why, for the start-up log: `cgroup cpu.max 200000/100000; affinity 64 CPUs`.
    public var reason: String

    public init(affinityCPUs: Int, quota: CPUQuota?) {
        let affinity = max(affinityCPUs, 1)
        let cpus = affinityCPUs == 1 ? "1 CPU" : "\(affinityCPUs) CPUs"
        if let quota {
            count = max(min(affinity, quota.cpus), 1)
            reason = "\(quota); affinity \(cpus)"
        } else {
            count = affinity
            reason = "affinity \(cpus); no cgroup CPU limit"
        }
    }

    /// For this process: its affinity mask and `CPUQuota.current(root:)`.
    public static func current(cgroupRoot: String = "/sys/fs/cgroup") -> WorkerDefault {
        WorkerDefault(affinityCPUs: Threads.affinityCPUs().count, quota: CPUQuota.current(root: cgroupRoot))
    }
}
