import Glibc
import Testing

@testable import SluiceSystem

@Suite struct CPUQuotaTests {
    @Test func cgroupV2CPUMax() {
        #expect(CPUQuota.parseCPUMax("max 100000\n") == nil)
        #expect(
            CPUQuota.parseCPUMax("200000 100000\n") == CPUQuota(quota: 200000, period: 100000, source: "cgroup cpu.max")
        )
        #expect(CPUQuota.parseCPUMax("150000 100000")?.cpus == 2)
        #expect(CPUQuota.parseCPUMax("50000 100000")?.cpus == 1)
        #expect(CPUQuota.parseCPUMax("100000 100000")?.cpus == 1)
        for bad in ["", "\n", "200000", "-1 100000", "0 100000", "200000 0", "x 100000", "1 2 3"] {
            #expect(CPUQuota.parseCPUMax(bad) == nil, "\(bad.debugDescription)")
        }
    }

    @Test func cgroupV1CFSQuota() {
        #expect(CPUQuota.parseCFS(quota: "-1\n", period: "100000\n") == nil)
        #expect(
            CPUQuota.parseCFS(quota: "300000\n", period: "100000\n")
                == CPUQuota(quota: 300000, period: 100000, source: "cgroup cpu.cfs_quota_us"))
        #expect(CPUQuota.parseCFS(quota: "250000", period: "100000")?.cpus == 3)
        #expect(CPUQuota.parseCFS(quota: "100000", period: "") == nil)
    }

    @Test func selfCgroupPath() {
        #expect(CPUQuota.parseSelfCgroup("0::/\n") == "/")
        #expect(CPUQuota.parseSelfCgroup("4:memory:/x\n0::/kubepods/pod1/c1\n") == "/kubepods/pod1/c1")
        #expect(CPUQuota.parseSelfCgroup("1:cpu:/\n") == nil)
        #expect(CPUQuota.parent(of: "/a/b") == "/a")
        #expect(CPUQuota.parent(of: "/a") == "/")
    }

    @Test func workersAreTheAffinityCPUsCappedByTheQuota() {
        let two = CPUQuota(quota: 200000, period: 100000, source: "cgroup cpu.max")
        let capped = WorkerDefault(affinityCPUs: 64, quota: two)
        #expect(capped.count == 2)
        #expect(capped.reason == "cgroup cpu.max 200000/100000; affinity 64 CPUs")
        #expect(WorkerDefault(affinityCPUs: 1, quota: two).count == 1)
        #expect(WorkerDefault(affinityCPUs: 1, quota: two).reason == "cgroup cpu.max 200000/100000; affinity 1 CPU")
        let free = WorkerDefault(affinityCPUs: 8, quota: nil)
        #expect(free.count == 8)
        #expect(free.reason == "affinity 8 CPUs; no cgroup CPU limit")
        #expect(WorkerDefault(affinityCPUs: 0, quota: nil).count == 1)
        let tiny = CPUQuota(quota: 1000, period: 100000, source: "cgroup cpu.max")
        #expect(WorkerDefault(affinityCPUs: 4, quota: tiny).count == 1)
    }

    @Test func readsV2FirstThenV1() throws {
        var template = Array("/tmp/sluice-cgroup-XXXXXX".utf8CString)
        let root = try #require(
            template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        func write(_ path: String, _ text: String) {
            let fd = open(root + path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
            close(fd)
        }
        defer {
            for path in ["/cpu.max", "/cpu/cpu.cfs_quota_us", "/cpu/cpu.cfs_period_us"] { unlink(root + path) }
            rmdir(root + "/cpu")
            rmdir(root)
        }
        #expect(CPUQuota.current(root: root) == nil)
        mkdir(root + "/cpu", 0o755)
        write("/cpu/cpu.cfs_quota_us", "300000\n")
        write("/cpu/cpu.cfs_period_us", "100000\n")
        #expect(CPUQuota.current(root: root)?.description == "cgroup cpu.cfs_quota_us 300000/100000")
        // A v2 file, even one saying "no limit", means the v1 files are not the ones in force.
        write("/cpu.max", "max 100000\n")
        #expect(CPUQuota.current(root: root) == nil)
        write("/cpu.max", "200000 100000\n")
        #expect(CPUQuota.current(root: root)?.description == "cgroup cpu.max 200000/100000")
        #expect(WorkerDefault.current(cgroupRoot: root).count == min(Threads.affinityCPUs().count, 2))
    }
}
