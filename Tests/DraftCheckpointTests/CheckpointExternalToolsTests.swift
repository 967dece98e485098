// Users' tools read our files: h5py (PyPI) and h5dump, finding tensors and attributes by name,
// and the documented checksum can be recomputed from Python alone.
import DraftCheckpoint
import Foundation
import XCTest

final class CheckpointExternalToolsTests: XCTestCase {
    private func writeSample() throws -> (dir: URL, file: URL, state: SampleState) {
        let dir = try makeTemporaryDirectory()
        let state = SampleState(step: 500)
        let saved = try state.save(to: CheckpointStore(directory: dir, keepLast: 1))
        return (dir, saved.url, state)
    }

    func testH5pyReadsTensorsAttributesAndChecksums() throws {
        guard let python = which("python3"), try runProgram(python, ["-c", "import h5py"]).status == 0 else {
            throw XCTSkip("python3 with h5py is not installed")
        }
        let (dir, file, state) = try writeSample()
        defer { try? FileManager.default.removeItem(at: dir) }
        let embedBits = bitPatterns(state.parameters[0]).prefix(4).map(String.init).joined(separator: ",")
        // A plain-Python xxHash64, written from the published algorithm, checks the documented checksum.
        let script = """
        import h5py, numpy as np
        M = (1 << 64) - 1
        P1, P2, P3, P4, P5 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5
        rotl = lambda x, r: ((x << r) | (x >> (64 - r))) & M
        rnd = lambda acc, v: (rotl((acc + v * P2) & M, 31) * P1) & M
        def xxh64(b):
            n, p = len(b), 0
            u64 = lambda i: int.from_bytes(b[i:i + 8], 'little')
            if n >= 32:
                v = [(P1 + P2) & M, P2, 0, (-P1) & M]
                while p + 32 <= n:
                    v = [rnd(v[k], u64(p + 8 * k)) for k in range(4)]
                    p += 32
                h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
                for x in v:
                    h = (((h ^ rnd(0, x)) * P1) + P4) & M
            else:
                h = P5
            h = (h + n) & M
            while p + 8 <= n:
                h = (rotl(h ^ rnd(0, u64(p)), 27) * P1 + P4) & M
                p += 8
            if p + 4 <= n:
                h = (rotl(h ^ ((int.from_bytes(b[p:p + 4], 'little') * P1) & M), 23) * P2 + P3) & M
                p += 4
            while p < n:
                h = (rotl(h ^ ((b[p] * P5) & M), 11) * P1) & M
                p += 1
            h ^= h >> 33; h = (h * P2) & M; h ^= h >> 29; h = (h * P3) & M; h ^= h >> 32
            return h
        f = h5py.File('\(file.path)', 'r')
        assert f.attrs['format'] == 'swiftdraft-checkpoint', f.attrs['format']
        assert int(f.attrs['format_version']) == \(CheckpointFormat.version)
        assert int(f.attrs['step']) == 500 and int(f.attrs['tokens_seen']) == 500 * 1024
        assert f.attrs['stage'] == 'pretrain' and int(f.attrs['world_size']) == 8
        assert f.attrs['config_yaml'].startswith('run: {name: test')
        assert len(f.attrs['tokenizer_sha256']) == 64
        assert sorted(f.keys()) == ['data', 'model', 'optimizer', 'rng'], list(f.keys())
        w = f['/model/model.embed_tokens.weight']
        assert w.dtype == np.float32 and w.shape == (64, 16), (w.dtype, w.shape)
        assert w[()].view(np.uint32).ravel()[:4].tolist() == [\(embedBits)]
        assert f['/optimizer/model.embed_tokens.weight.exp_avg_sq'].shape == (64, 16)
        assert int(f['/optimizer'].attrs['step']) == 500
        assert f['/data/cursor'][()].tolist() == [4000, 3, -1]
        for group in ('model', 'optimizer', 'data', 'rng'):
            for name, ds in f[group].items():
                assert xxh64(ds[()].tobytes()) == int(ds.attrs['checksum_xxh64']), name
        print('h5py ok', len(f['model']), len(f['optimizer']))
        """
        let result = try runProgram(python, ["-c", script])
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("h5py ok 5 10"), result.output)
    }

    func testH5dumpListsTensorsAndAttributesByName() throws {
        guard let h5dump = which("h5dump") else { throw XCTSkip("h5dump (hdf5-tools) is not installed") }
        let (dir, file, state) = try writeSample()
        defer { try? FileManager.default.removeItem(at: dir) }

        let header = try runProgram(h5dump, ["-H", file.path])
        XCTAssertEqual(header.status, 0, header.output)
        for needle in ["GROUP \"/\"", "ATTRIBUTE \"format\"", "ATTRIBUTE \"step\"", "ATTRIBUTE \"tokenizer_sha256\"",
                       "ATTRIBUTE \"config_yaml\"", "GROUP \"model\"", "GROUP \"optimizer\"", "GROUP \"data\"",
                       "GROUP \"rng\"", "DATASET \"model.embed_tokens.weight\"", "H5T_IEEE_F32LE",
                       "DATASPACE  SIMPLE { ( 64, 16 ) / ( 64, 16 ) }", "ATTRIBUTE \"checksum_xxh64\"",
                       "DATASET \"model.layers.0.self_attn.q_proj.weight.exp_avg\""] {
            XCTAssertTrue(header.output.contains(needle), "h5dump -H lacks \(needle)")
        }

        let data = try runProgram(h5dump, ["-d", "/data/cursor", file.path])
        XCTAssertEqual(data.status, 0, data.output)
        XCTAssertTrue(data.output.contains("4000, 3, -1"), data.output)

        // Tensor values as h5dump prints them, checked against ours via the raw binary dump (-b LE -o).
        let raw = dir.appendingPathComponent("norm.bin")
        let binary = try runProgram(h5dump, ["-d", "/model/model.norm.weight", "-b", "LE", "-o", raw.path, file.path])
        XCTAssertEqual(binary.status, 0, binary.output)
        let bytes = try Data(contentsOf: raw)
        let expected = state.parameters[4].withUnsafeBytes { Data($0) }
        XCTAssertEqual(bytes, expected)

        let attribute = try runProgram(h5dump, ["-a", "/format", file.path])
        XCTAssertTrue(attribute.output.contains("\"swiftdraft-checkpoint\""), attribute.output)
    }
}
