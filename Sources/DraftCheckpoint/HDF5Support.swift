// Thin internal layer over the HDF5 C API: locking, error capture, attributes, group and attribute listing.
// Every failure becomes a CheckpointError naming the file; HDF5's own stderr printing is switched off.
import CHDF5
import Foundation

/// The distro's HDF5 is the serial, non-thread-safe build: every call into it happens under this lock.
/// Recursive because `CheckpointStore.save` holds it while the caller's build closure calls the writer.
private let hdf5Lock = NSRecursiveLock()

/// Runs `body` under the HDF5 lock with HDF5's automatic error printing off (the stack is read by
/// `HDF5Context.failure` instead, so a corrupt file yields one line, not a page of traceback on stderr).
func withHDF5<T>(_ body: () throws -> T) rethrows -> T {
    hdf5Lock.lock()
    defer { hdf5Lock.unlock() }
    _ = H5Eset_auto2(swd_h5e_default(), nil, nil)
    return try body()
}

/// The outermost and innermost messages on HDF5's error stack (what failed and where it was detected, e.g.
/// "unable to open file: truncated file: eof = 1024, ..."), then clears the stack.
private func hdf5ErrorDetail() -> String? {
    final class Messages { var list: [String] = [] }
    let messages = Messages()
    let unmanaged = Unmanaged.passRetained(messages)
    defer { unmanaged.release() }
    _ = H5Ewalk2(swd_h5e_default(), H5E_WALK_DOWNWARD, { _, error, data in
        guard let error, let data, let desc = error.pointee.desc else { return 0 }
        Unmanaged<Messages>.fromOpaque(data).takeUnretainedValue().list.append(String(cString: desc))
        return 0
    }, unmanaged.toOpaque())
    _ = H5Eclear2(swd_h5e_default())
    guard let first = messages.list.first, let last = messages.list.last else { return nil }
    return first == last ? first : "\(first): \(last)"
}

/// Error construction for one file: each check names the file and what was expected, plus HDF5's own reason.
struct HDF5Context {
    let path: String

    func failure(_ expected: String) -> CheckpointError {
        if let detail = hdf5ErrorDetail() {
            return CheckpointError(path: path, reason: "\(expected) (HDF5: \(detail))")
        }
        return CheckpointError(path: path, reason: expected)
    }

    /// An identifier from a create/open call, or the error when HDF5 returned a negative one.
    func id(_ id: hid_t, _ expected: @autoclosure () -> String) throws -> hid_t {
        if id < 0 { throw failure(expected()) }
        return id
    }

    func ok(_ status: herr_t, _ expected: @autoclosure () -> String) throws {
        if status < 0 { throw failure(expected()) }
    }
}

/// Closes an identifier with the matching H5*close at scope exit.
struct H5ID {
    static func close(dataspace id: hid_t) { if id >= 0 { _ = H5Sclose(id) } }
    static func close(datatype id: hid_t) { if id >= 0 { _ = H5Tclose(id) } }
    static func close(attribute id: hid_t) { if id >= 0 { _ = H5Aclose(id) } }
    static func close(dataset id: hid_t) { if id >= 0 { _ = H5Dclose(id) } }
    static func close(object id: hid_t) { if id >= 0 { _ = H5Oclose(id) } }
    static func close(plist id: hid_t) { if id >= 0 { _ = H5Pclose(id) } }
}

/// File access properties for checkpoints: a strong close (H5Fclose really closes the descriptor, so the fsync that
/// follows covers everything written) and file locking that is skipped where the file system lacks it (NFS, Lustre),
/// instead of failing to open. The caller closes the list.
func makeFileAccess(_ ctx: HDF5Context) throws -> hid_t {
    let fapl = try ctx.id(H5Pcreate(swd_h5p_file_access()), "expected to create a file access property list")
    guard H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0, H5Pset_file_locking(fapl, true, true) >= 0 else {
        H5ID.close(plist: fapl)
        throw ctx.failure("expected to set file access properties")
    }
    return fapl
}

/// A variable-length UTF-8 string type (h5py reads it as `str`); the caller closes it.
func makeStringType(_ ctx: HDF5Context) throws -> hid_t {
    let type = try ctx.id(H5Tcopy(swd_h5t_c_s1()), "expected to create a string datatype")
    guard H5Tset_size(type, swd_h5t_variable()) >= 0, H5Tset_cset(type, H5T_CSET_UTF8) >= 0 else {
        H5ID.close(datatype: type)
        throw ctx.failure("expected to create a variable-length UTF-8 string datatype")
    }
    return type
}

/// A scalar dataspace for one value, a 1-D one for an array, a null one for an empty array (h5py reads it as Empty).
private func makeDataspace(count: Int?, _ ctx: HDF5Context) throws -> hid_t {
    guard let count else { return try ctx.id(H5Screate(H5S_SCALAR), "expected to create a scalar dataspace") }
    if count == 0 { return try ctx.id(H5Screate(H5S_NULL), "expected to create an empty dataspace") }
    var dims = [hsize_t(count)]
    return try ctx.id(H5Screate_simple(1, &dims, nil), "expected to create a dataspace of \(count) elements")
}

/// Writes (or replaces) attribute `name` on `object`.
func writeAttribute(_ name: String, _ value: CheckpointAttribute, on object: hid_t, where location: String,
                    _ ctx: HDF5Context) throws {
    if H5Aexists(object, name) > 0 {
        try ctx.ok(H5Adelete(object, name), "expected to replace attribute \(name) on \(location)")
    }
    let fileType: hid_t, memoryType: hid_t, count: Int?
    var ownedType: hid_t = -1
    defer { H5ID.close(datatype: ownedType) }
    switch value {
    case .string:
        ownedType = try makeStringType(ctx)
        (fileType, memoryType, count) = (ownedType, ownedType, nil)
    case .int: (fileType, memoryType, count) = (swd_h5t_std_i64le(), swd_h5t_native_int64(), nil)
    case .double: (fileType, memoryType, count) = (swd_h5t_ieee_f64le(), swd_h5t_native_double(), nil)
    case .ints(let v): (fileType, memoryType, count) = (swd_h5t_std_i64le(), swd_h5t_native_int64(), v.count)
    case .doubles(let v): (fileType, memoryType, count) = (swd_h5t_ieee_f64le(), swd_h5t_native_double(), v.count)
    }
    let space = try makeDataspace(count: count, ctx)
    defer { H5ID.close(dataspace: space) }
    let attribute = try ctx.id(H5Acreate2(object, name, fileType, space, swd_h5p_default(), swd_h5p_default()),
                               "expected to create attribute \(name) on \(location)")
    defer { H5ID.close(attribute: attribute) }
    let status: herr_t
    switch value {
    case .string(let s):
        status = s.withCString { chars in
            var pointer: UnsafePointer<CChar>? = chars
            return H5Awrite(attribute, memoryType, &pointer)
        }
    case .int(let v):
        var v = v
        status = H5Awrite(attribute, memoryType, &v)
    case .double(let v):
        var v = v
        status = H5Awrite(attribute, memoryType, &v)
    case .ints(let v):
        status = v.isEmpty ? 0 : v.withUnsafeBufferPointer { H5Awrite(attribute, memoryType, $0.baseAddress) }
    case .doubles(let v):
        status = v.isEmpty ? 0 : v.withUnsafeBufferPointer { H5Awrite(attribute, memoryType, $0.baseAddress) }
    }
    try ctx.ok(status, "expected to write attribute \(name) on \(location)")
}

/// Writes the checksum attribute (unsigned 64-bit) of a dataset.
func writeChecksum(_ checksum: UInt64, on dataset: hid_t, where location: String, _ ctx: HDF5Context) throws {
    let space = try makeDataspace(count: nil, ctx)
    defer { H5ID.close(dataspace: space) }
    let name = CheckpointFormat.checksumAttribute
    let attribute = try ctx.id(H5Acreate2(dataset, name, swd_h5t_std_u64le(), space, swd_h5p_default(),
                                          swd_h5p_default()), "expected to create attribute \(name) on \(location)")
    defer { H5ID.close(attribute: attribute) }
    var value = checksum
    try ctx.ok(H5Awrite(attribute, swd_h5t_native_uint64(), &value), "expected to write \(name) on \(location)")
}

/// Reads the checksum attribute of a dataset; nil when it has none.
func readChecksum(of dataset: hid_t, where location: String, _ ctx: HDF5Context) throws -> UInt64? {
    let name = CheckpointFormat.checksumAttribute
    guard H5Aexists(dataset, name) > 0 else { return nil }
    let attribute = try ctx.id(H5Aopen(dataset, name, swd_h5p_default()), "expected to open \(name) on \(location)")
    defer { H5ID.close(attribute: attribute) }
    let space = H5Aget_space(attribute)
    defer { H5ID.close(dataspace: space) }
    guard space >= 0, H5Sget_simple_extent_npoints(space) == 1 else {
        throw ctx.failure("expected \(name) on \(location) to be a single unsigned 64-bit integer")
    }
    var value: UInt64 = 0
    try ctx.ok(H5Aread(attribute, swd_h5t_native_uint64(), &value), "expected to read \(name) on \(location)")
    return value
}

/// Reads attribute `name` of `object` as a string, int64 or float64 value (scalar or 1-D).
func readAttribute(_ name: String, of object: hid_t, where location: String,
                   _ ctx: HDF5Context) throws -> CheckpointAttribute {
    let what = "attribute \(name) on \(location)"
    let attribute = try ctx.id(H5Aopen(object, name, swd_h5p_default()), "expected to open \(what)")
    defer { H5ID.close(attribute: attribute) }
    let type = try ctx.id(H5Aget_type(attribute), "expected to read the datatype of \(what)")
    defer { H5ID.close(datatype: type) }
    let space = try ctx.id(H5Aget_space(attribute), "expected to read the dataspace of \(what)")
    defer { H5ID.close(dataspace: space) }
    let spaceClass = H5Sget_simple_extent_type(space)
    let points = Int(H5Sget_simple_extent_npoints(space))
    let isScalar = spaceClass == H5S_SCALAR
    guard isScalar || spaceClass == H5S_NULL || (spaceClass == H5S_SIMPLE && H5Sget_simple_extent_ndims(space) == 1)
    else { throw ctx.failure("expected \(what) to be a scalar or a 1-D array") }

    switch H5Tget_class(type) {
    case H5T_STRING:
        guard isScalar else { throw ctx.failure("expected \(what) to be a single string") }
        if H5Tis_variable_str(type) > 0 {
            let memoryType = try makeStringType(ctx)
            defer { H5ID.close(datatype: memoryType) }
            var pointer: UnsafeMutablePointer<CChar>? = nil
            try ctx.ok(H5Aread(attribute, memoryType, &pointer), "expected to read \(what) as a string")
            defer { if let pointer { _ = H5free_memory(pointer) } }
            return .string(pointer.map { String(cString: $0) } ?? "")
        }
        // A fixed-length string (as some tools write): read its bytes and drop the padding.
        let size = H5Tget_size(type)
        var bytes = [CChar](repeating: 0, count: size + 1)
        try ctx.ok(H5Aread(attribute, type, &bytes), "expected to read \(what) as a string")
        return .string(String(cString: bytes))
    case H5T_INTEGER:
        if isScalar {
            var value: Int64 = 0
            try ctx.ok(H5Aread(attribute, swd_h5t_native_int64(), &value), "expected to read \(what) as int64")
            return .int(value)
        }
        var values = [Int64](repeating: 0, count: points)
        if points > 0 {
            try ctx.ok(H5Aread(attribute, swd_h5t_native_int64(), &values), "expected to read \(what) as int64")
        }
        return .ints(values)
    case H5T_FLOAT:
        if isScalar {
            var value: Double = 0
            try ctx.ok(H5Aread(attribute, swd_h5t_native_double(), &value), "expected to read \(what) as float64")
            return .double(value)
        }
        var values = [Double](repeating: 0, count: points)
        if points > 0 {
            try ctx.ok(H5Aread(attribute, swd_h5t_native_double(), &values), "expected to read \(what) as float64")
        }
        return .doubles(values)
    default:
        throw ctx.failure("expected \(what) to be a string, an integer or a float")
    }
}

/// Names collected by an H5Aiterate2/H5Literate callback.
private final class NameList { var names: [String] = [] }

/// Runs one HDF5 iteration (`iterate(index, context)`, whose callback passes each name to `appendName`) in creation
/// order where the file tracks it (ours do), else by name; nil when both fail.
private func collectNames(_ iterate: (H5_index_t, UnsafeMutableRawPointer) -> herr_t) -> [String]? {
    for index in [H5_INDEX_CRT_ORDER, H5_INDEX_NAME] {
        let list = NameList()
        let unmanaged = Unmanaged.passRetained(list)
        defer { unmanaged.release() }
        if iterate(index, unmanaged.toOpaque()) >= 0 { return list.names }
        _ = H5Eclear2(swd_h5e_default())
    }
    return nil
}

/// The body of both iteration callbacks: C callbacks cannot capture, so the list travels as the context pointer.
private func appendName(_ name: UnsafePointer<CChar>?, _ context: UnsafeMutableRawPointer?) -> herr_t {
    guard let name, let context else { return 0 }
    Unmanaged<NameList>.fromOpaque(context).takeUnretainedValue().names.append(String(cString: name))
    return 0
}

/// Attribute names of `object`, in creation order where the file tracks it, else by name.
func listAttributeNames(of object: hid_t, where location: String, _ ctx: HDF5Context) throws -> [String] {
    let names = collectNames { index, context in
        var position: hsize_t = 0
        return H5Aiterate2(object, index, H5_ITER_INC, &position, { _, name, _, data in appendName(name, data) }, context)
    }
    guard let names else { throw ctx.failure("expected to list the attributes of \(location)") }
    return names
}

/// Link names inside group `group`, in creation order where the file tracks it, else by name.
func listLinkNames(in group: hid_t, where location: String, _ ctx: HDF5Context) throws -> [String] {
    let names = collectNames { index, context in
        var position: hsize_t = 0
        return H5Literate(group, index, H5_ITER_INC, &position, { _, name, _, data in appendName(name, data) }, context)
    }
    guard let names else { throw ctx.failure("expected to list the contents of \(location)") }
    return names
}
