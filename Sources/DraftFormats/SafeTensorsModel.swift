import Foundation

/// The weights of a Hugging Face model directory: one `model.safetensors`, or shards listed by
/// `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {tensor name: shard file name}}`). Tensors are
/// looked up by name across shards; every shard is memory-mapped once.
public struct SafeTensorsModel: Sendable {
    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    /// The shards, in the order of their file names (one for an unsharded model).
    public let shards: [SafeTensorsFile]
    /// Every tensor name, sorted.
    public let names: [String]
    private let shardOf: [String: Int]

    /// Opens a model directory (the index when present, else `model.safetensors`), an index file, or a single
    /// safetensors file. A missing shard, or a tensor the index places in a shard that lacks it, is a `FormatError`
    /// naming the index.
    public init(at url: URL) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw FormatError("\(url.path): cannot read (no such file or directory)")
        }
        var target = url
        if isDirectory.boolValue {
            let index = url.appendingPathComponent(Self.indexFileName)
            target = FileManager.default.fileExists(atPath: index.path) ? index : url.appendingPathComponent(Self.singleFileName)
        }
        if target.lastPathComponent.hasSuffix(".index.json") {
            (shards, names, shardOf) = try Self.openIndex(target)
        } else {
            let file = try SafeTensorsFile(contentsOf: target)
            shards = [file]
            names = file.entries.keys.sorted()
            shardOf = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })
        }
    }

    private static func openIndex(_ index: URL) throws -> ([SafeTensorsFile], [String], [String: Int]) {
        let path = index.path
        func fail(_ what: String) -> FormatError { FormatError("\(path): \(what)") }
        let data: Data
        do { data = try Data(contentsOf: index) } catch { throw fail("cannot read (\(error.localizedDescription))") }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw fail("malformed JSON (expected an object with a weight_map)")
        }
        guard let map = object["weight_map"] as? [String: Any], !map.isEmpty else {
            throw fail("expected weight_map to be a non-empty object of tensor name -> shard file")
        }
        let directory = index.deletingLastPathComponent()
        var shardFiles = [String: Int]()
        var weightMap = [String: String]()
        for (name, value) in map {
            guard let shard = value as? String, !shard.isEmpty, !shard.hasPrefix("/"), !shard.contains("..") else {
                throw fail("weight_map['\(name)'] is not a shard file name in this directory")
            }
            weightMap[name] = shard
            shardFiles[shard] = 0
        }
        let shardNames = shardFiles.keys.sorted()
        var files = [SafeTensorsFile]()
        for (i, shard) in shardNames.enumerated() {
            let url = directory.appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw fail("shard '\(shard)' named in weight_map is missing (expected \(url.path))")
            }
            files.append(try SafeTensorsFile(contentsOf: url))
            shardFiles[shard] = i
        }
        var shardOf = [String: Int](minimumCapacity: weightMap.count)
        for (name, shard) in weightMap {
            guard let i = shardFiles[shard], files[i].entries[name] != nil else {
                throw fail("weight_map puts tensor '\(name)' in '\(shard)', which does not hold it")
            }
            shardOf[name] = i
        }
        return (files, weightMap.keys.sorted(), shardOf)
    }

    /// The shard holding `name` and its entry.
    public func entry(_ name: String) -> (file: SafeTensorsFile, entry: SafeTensorsFile.Entry)? {
        guard let i = shardOf[name], let e = shards[i].entries[name] else { return nil }
        return (shards[i], e)
    }

    /// A floating-point tensor (F32, F16 or BF16) as Float; a `FormatError` when absent or of another dtype.
    public func tensor(_ name: String) throws -> [Float] {
        guard let i = shardOf[name] else {
            throw FormatError("\(shards.first?.path ?? "model"): no tensor '\(name)' in this model")
        }
        return try shards[i].tensor(name)
    }

    /// Writes `model.safetensors.index.json` for shards already written: `weightMap` maps tensor names to shard file
    /// names in `directory`; `totalSize` is the sum of the tensors' data bytes (Hugging Face's `metadata.total_size`).
    public static func writeIndex(weightMap: [String: String], totalSize: Int, in directory: URL) throws {
        let object: [String: Any] = ["metadata": ["total_size": totalSize], "weight_map": weightMap]
        let json = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
        try json.write(to: directory.appendingPathComponent(indexFileName), options: .atomic)
    }
}
