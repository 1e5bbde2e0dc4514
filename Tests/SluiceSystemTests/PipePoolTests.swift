import CShims
import Glibc
import Testing

@testable import SluiceSystem

/// The capacity the kernel reports for `pipe`.
private func capacity(_ pipe: Pipe) -> Int { Int(sluice_pipe_get_size(pipe.writeFD)) }

/// Tests that switch `FaultInjection.pipeSetSizeErrno` run one at a time; other suites'
/// pools only see a refused resize while one runs, which they tolerate.
@Suite(.serialized) struct PipePoolTests {
    @Test func grantedSizeIsThePipesCapacity() throws {
        var pool = PipePool(pipeSize: 1 << 18, maxIdle: 2)
        let pipe = try pool.acquire()
        #expect(pool.grantedSize == capacity(pipe))
        #expect(pool.setSizeFailures == 0)
        let warning = pool.takeSetSizeWarning()
        #expect(warning == nil)
        pool.release(pipe, empty: false)
    }

    @Test func refusedResizeUsesTheSizeThePipeHas() throws {
        FaultInjection.pipeSetSizeErrno = EPERM
        defer { FaultInjection.pipeSetSizeErrno = 0 }
        var pool = PipePool(pipeSize: 1 << 20, maxIdle: 4)
        let first = try pool.acquire()
        let second = try pool.acquire()
        #expect(pool.setSizeFailures == 2)
        #expect(capacity(first) < 1 << 20)
        #expect(pool.grantedSize == capacity(second))
        #expect(pool.firstSetSizeFailure?.errno == Errno(rawValue: EPERM))
        #expect(pool.firstSetSizeFailure?.size == capacity(first))
        let taken = pool.takeSetSizeWarning()
        let warning = try #require(taken)
        #expect(warning.hasPrefix("F_SETPIPE_SZ 1048576 refused (Operation not permitted): splicing through pipes of "))
        let again = pool.takeSetSizeWarning()
        #expect(again == nil, "the warning comes once")
        pool.release(first, empty: true)
        pool.release(second, empty: true)
    }

    @Test func pooledPipesOfDifferentSizesReportTheirOwn() throws {
        var pool = PipePool(pipeSize: 1 << 18, maxIdle: 4)
        FaultInjection.pipeSetSizeErrno = EPERM
        let small = try pool.acquire()
        FaultInjection.pipeSetSizeErrno = 0
        let large = try pool.acquire()
        #expect(pool.grantedSize == capacity(large))
        try #require(capacity(small) != capacity(large), "F_SETPIPE_SZ 256 KiB is allowed here")
        pool.release(small, empty: true)
        pool.release(large, empty: true)
        // Last in, first out: the large pipe, then the small one, each with its own size.
        let again = try pool.acquire()
        #expect(again == large)
        #expect(pool.grantedSize == capacity(large))
        let next = try pool.acquire()
        #expect(next == small)
        #expect(pool.grantedSize == capacity(small))
        pool.release(again, empty: false)
        pool.release(next, empty: false)
    }
}
