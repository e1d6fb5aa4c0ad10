//! One `pwrite` per commit for the Writer's WAL.
//!
//! SQLite writes each WAL frame with two system calls, its 24-byte header and then the page,
//! so a commit of 15 pages (an insert with a search index) made 30 `pwrite`s, each doing
//! page-cache work on the one or two file pages it touched: a quarter of the Writer thread's
//! time. This VFS wraps the platform's. On a WAL file it keeps consecutive writes in a buffer
//! and writes them with one call as soon as the frame that commits is complete, so every frame
//! of a commit is in the file before SQLite publishes the commit in the WAL index (no reader,
//! checkpoint or crash recovery can see the difference) and an error is the commit's own. Any
//! other call on the file (read, sync, truncate, size, lock, control, close) writes the buffer
//! first; so does a write that does not follow on from it. Every other file passes straight
//! through. Only the Writer's connection opens with it ([`VFS_NAME`]).
//!
//! Safety: SQLite calls every method below with a file it allocated at this VFS's `szOsFile`
//! and opened through [`shim_open`], which writes the [`ShimFile`] header, so the casts hold;
//! one connection's file is never used by two threads at once.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name to open a connection with.
pub const VFS_NAME: &CStr = c"plaza-wal-buffer";
/// Bytes of WAL kept before they are written even without a commit frame (a large transaction
/// spilling pages). A commit of `MAX_GROUP_OPS` single-row inserts is far below it.
const MAX_BUFFERED: usize = 1 << 20;
/// Most bytes per write: the unix VFS masks a write's length to 17 bits (`nBuf &= 0x1ffff`).
const MAX_WRITE: usize = 120 << 10;
/// SQLite's WAL frame header; bytes 4..8 hold the database size in pages for the frame that
/// commits and zero for every other frame.
const FRAME_HEADER: usize = 24;

/// What SQLite allocates per open file (`szOsFile`): this, then the platform VFS's own file.
#[repr(C)]
struct ShimFile {
    /// Must come first: SQLite sees this.
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Present on WAL files only.
    wal: *mut WalBuffer,
}

#[derive(Default)]
struct WalBuffer {
    bytes: Vec<u8>,
    /// File offset of `bytes[0]`.
    offset: i64,
    /// The last write was the header of the frame that commits: write out after its page.
    commit_page_next: bool,
}

/// The platform VFS this one wraps (registered once per process).
struct Registered {
    base: usize,
}

static REGISTERED: OnceLock<Result<Registered, c_int>> = OnceLock::new();

/// Registers the VFS (once). An error is SQLite's result code.
pub fn register() -> Result<(), c_int> {
    REGISTERED
        .get_or_init(|| unsafe {
            let base = ffi::sqlite3_vfs_find(ptr::null());
            if base.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let mut vfs: ffi::sqlite3_vfs = *base;
            vfs.zName = VFS_NAME.as_ptr();
            vfs.pNext = ptr::null_mut();
            vfs.szOsFile = real_file_offset() as c_int + (*base).szOsFile;
            vfs.xOpen = Some(shim_open);
            let vfs = Box::leak(Box::new(vfs));
            match ffi::sqlite3_vfs_register(vfs, 0) {
                ffi::SQLITE_OK => Ok(Registered { base: base as usize }),
                rc => Err(rc),
            }
        })
        .as_ref()
        .map(|_| ())
        .map_err(|rc| *rc)
}

/// Where the platform's file starts in the allocation (8-byte aligned, as SQLite's own are).
const fn real_file_offset() -> usize {
    std::mem::size_of::<ShimFile>().next_multiple_of(8)
}

fn base_vfs() -> *mut ffi::sqlite3_vfs {
    match REGISTERED.get() {
        Some(Ok(r)) => r.base as *mut ffi::sqlite3_vfs,
        _ => ptr::null_mut(),
    }
}

unsafe extern "C" fn shim_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base_vfs();
    let shim = file as *mut ShimFile;
    let real = (file as *mut u8).add(real_file_offset()) as *mut ffi::sqlite3_file;
    (*shim).base.pMethods = ptr::null();
    let Some(open) = (!base.is_null()).then(|| (*base).xOpen).flatten() else { return ffi::SQLITE_ERROR };
    let rc = open(base, name, real, flags, out_flags);
    if (*real).pMethods.is_null() {
        return rc;
    }
    if rc != ffi::SQLITE_OK {
        // An open that failed but set its methods still wants its close (SQLite's VFS rule);
        // SQLite will not call ours, as `pMethods` stays null.
        if let Some(close) = (*(*real).pMethods).xClose {
            close(real);
        }
        return rc;
    }
    let wal = if flags & ffi::SQLITE_OPEN_WAL != 0 { Box::into_raw(Box::<WalBuffer>::default()) } else { ptr::null_mut() };
    ptr::write(shim, ShimFile { base: ffi::sqlite3_file { pMethods: &METHODS }, real, wal });
    rc
}

unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'a ffi::sqlite3_io_methods, Option<&'a mut WalBuffer>) {
    let shim = &*(file as *mut ShimFile);
    (shim.real, &*(*shim.real).pMethods, shim.wal.as_mut())
}

/// Writes out what the buffer holds.
unsafe fn write_out(real: *mut ffi::sqlite3_file, methods: &ffi::sqlite3_io_methods, wal: &mut WalBuffer) -> c_int {
    wal.commit_page_next = false;
    if wal.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = methods.xWrite else { return ffi::SQLITE_IOERR_WRITE };
    let mut rc = ffi::SQLITE_OK;
    let mut offset = wal.offset;
    for chunk in wal.bytes.chunks(MAX_WRITE) {
        rc = write(real, chunk.as_ptr() as *const c_void, chunk.len() as c_int, offset);
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += chunk.len() as i64;
    }
    wal.bytes.clear();
    rc
}

/// Writes the buffer out before a call that must see the file as SQLite wrote it.
unsafe fn settle(file: *mut ffi::sqlite3_file) -> c_int {
    match parts(file) {
        (real, methods, Some(wal)) => write_out(real, methods, wal),
        _ => ffi::SQLITE_OK,
    }
}

/// Writes the buffer out, then makes `call` on the platform's file.
unsafe fn settled(file: *mut ffi::sqlite3_file, call: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> c_int) -> c_int {
    let rc = settle(file);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let (real, methods, _) = parts(file);
    call(real, methods)
}

unsafe extern "C" fn shim_close(file: *mut ffi::sqlite3_file) -> c_int {
    let settled = settle(file);
    let shim = &mut *(file as *mut ShimFile);
    let (real, methods) = (shim.real, &*(*shim.real).pMethods);
    let rc = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(real));
    if !shim.wal.is_null() {
        drop(Box::from_raw(shim.wal));
        shim.wal = ptr::null_mut();
    }
    if settled != ffi::SQLITE_OK { settled } else { rc }
}

unsafe extern "C" fn shim_read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    settled(file, |real, methods| methods.xRead.map_or(ffi::SQLITE_IOERR_READ, |read| read(real, buf, amount, offset)))
}

unsafe extern "C" fn shim_write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    let (real, methods, wal) = parts(file);
    let Some(wal) = wal else {
        return methods.xWrite.map_or(ffi::SQLITE_IOERR_WRITE, |write| write(real, data, amount, offset));
    };
    let follows_on = offset == wal.offset + wal.bytes.len() as i64;
    if !wal.bytes.is_empty() && !follows_on {
        let commit_page_next = wal.commit_page_next;
        let rc = write_out(real, methods, wal);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        wal.commit_page_next = commit_page_next;
    }
    if wal.bytes.is_empty() {
        wal.offset = offset;
    }
    let data = std::slice::from_raw_parts(data as *const u8, amount.max(0) as usize);
    wal.bytes.extend_from_slice(data);
    if wal.commit_page_next {
        return write_out(real, methods, wal);
    }
    wal.commit_page_next = data.len() == FRAME_HEADER && data[4..8] != [0; 4];
    if wal.bytes.len() >= MAX_BUFFERED {
        return write_out(real, methods, wal);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn shim_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    settled(file, |real, methods| methods.xTruncate.map_or(ffi::SQLITE_IOERR_TRUNCATE, |truncate| truncate(real, size)))
}

unsafe extern "C" fn shim_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    settled(file, |real, methods| methods.xSync.map_or(ffi::SQLITE_IOERR_FSYNC, |sync| sync(real, flags)))
}

unsafe extern "C" fn shim_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    settled(file, |real, methods| methods.xFileSize.map_or(ffi::SQLITE_IOERR_FSTAT, |file_size| file_size(real, size)))
}

unsafe extern "C" fn shim_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    settled(file, |real, methods| methods.xLock.map_or(ffi::SQLITE_IOERR_LOCK, |lock| lock(real, level)))
}

unsafe extern "C" fn shim_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    settled(file, |real, methods| methods.xUnlock.map_or(ffi::SQLITE_IOERR_UNLOCK, |unlock| unlock(real, level)))
}

unsafe extern "C" fn shim_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let (real, methods, _) = parts(file);
    methods.xCheckReservedLock.map_or(ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, |check| check(real, out))
}

unsafe extern "C" fn shim_file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    settled(file, |real, methods| methods.xFileControl.map_or(ffi::SQLITE_NOTFOUND, |control| control(real, op, arg)))
}

unsafe extern "C" fn shim_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, methods, _) = parts(file);
    methods.xSectorSize.map_or(4096, |sector_size| sector_size(real))
}

unsafe extern "C" fn shim_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, methods, _) = parts(file);
    methods.xDeviceCharacteristics.map_or(0, |characteristics| characteristics(real))
}

unsafe extern "C" fn shim_shm_map(file: *mut ffi::sqlite3_file, page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int {
    let (real, methods, _) = parts(file);
    match methods.xShmMap {
        Some(map) if methods.iVersion >= 2 => map(real, page, size, extend, out),
        _ => ffi::SQLITE_IOERR_SHMMAP,
    }
}

unsafe extern "C" fn shim_shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    let (real, methods, _) = parts(file);
    match methods.xShmLock {
        Some(lock) if methods.iVersion >= 2 => lock(real, offset, n, flags),
        _ => ffi::SQLITE_IOERR_SHMLOCK,
    }
}

unsafe extern "C" fn shim_shm_barrier(file: *mut ffi::sqlite3_file) {
    let (real, methods, _) = parts(file);
    if let Some(barrier) = methods.xShmBarrier.filter(|_| methods.iVersion >= 2) {
        barrier(real);
    }
}

unsafe extern "C" fn shim_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    let (real, methods, _) = parts(file);
    match methods.xShmUnmap {
        Some(unmap) if methods.iVersion >= 2 => unmap(real, delete),
        _ => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn shim_fetch(file: *mut ffi::sqlite3_file, offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int {
    settled(file, |real, methods| match methods.xFetch {
        Some(fetch) if methods.iVersion >= 3 => fetch(real, offset, amount, out),
        _ => {
            *out = ptr::null_mut();
            ffi::SQLITE_OK
        }
    })
}

unsafe extern "C" fn shim_unfetch(file: *mut ffi::sqlite3_file, offset: i64, page: *mut c_void) -> c_int {
    let (real, methods, _) = parts(file);
    match methods.xUnfetch {
        Some(unfetch) if methods.iVersion >= 3 => unfetch(real, offset, page),
        _ => ffi::SQLITE_OK,
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(shim_close),
    xRead: Some(shim_read),
    xWrite: Some(shim_write),
    xTruncate: Some(shim_truncate),
    xSync: Some(shim_sync),
    xFileSize: Some(shim_file_size),
    xLock: Some(shim_lock),
    xUnlock: Some(shim_unlock),
    xCheckReservedLock: Some(shim_check_reserved_lock),
    xFileControl: Some(shim_file_control),
    xSectorSize: Some(shim_sector_size),
    xDeviceCharacteristics: Some(shim_device_characteristics),
    xShmMap: Some(shim_shm_map),
    xShmLock: Some(shim_shm_lock),
    xShmBarrier: Some(shim_shm_barrier),
    xShmUnmap: Some(shim_shm_unmap),
    xFetch: Some(shim_fetch),
    xUnfetch: Some(shim_unfetch),
};

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    use super::*;

    fn open(path: &std::path::Path) -> Connection {
        register().unwrap();
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), VFS_NAME).unwrap();
        // A tiny page cache, so the big transaction below spills pages into the WAL before it
        // commits (frames written, then read back, then overwritten).
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=10; PRAGMA wal_autocheckpoint=0;").unwrap();
        conn
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn every_commit_is_in_the_file_before_commit_returns_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut writer = open(&path);
        writer.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").unwrap();
        // A reader on SQLite's own VFS, with its own file handles: it sees only what is in the files.
        let reader = Connection::open(&path).unwrap();
        let mut expected = 0;
        for round in 0..50 {
            let tx = writer.transaction().unwrap();
            for i in 0..(round % 7 + 1) {
                tx.execute("INSERT INTO t (body) VALUES (?)", [format!("{round}-{i}-{}", "x".repeat(900))]).unwrap();
                expected += 1;
            }
            tx.commit().unwrap();
            assert_eq!(count(&reader), expected, "round {round}");
        }
        // Larger than the page cache and than one write of the unix VFS (128 KiB): spills, then commits.
        let tx = writer.transaction().unwrap();
        for i in 0..2_000 {
            tx.execute("INSERT INTO t (body) VALUES (?)", [format!("big-{i}-{}", "y".repeat(700))]).unwrap();
        }
        tx.commit().unwrap();
        expected += 2_000;
        assert_eq!(count(&reader), expected);
        // A spilled transaction that rolls back leaves nothing behind.
        let tx = writer.transaction().unwrap();
        for i in 0..2_000 {
            tx.execute("INSERT INTO t (body) VALUES (?)", [format!("gone-{i}-{}", "z".repeat(700))]).unwrap();
        }
        tx.rollback().unwrap();
        writer.execute("INSERT INTO t (body) VALUES ('after the rollback')", []).unwrap();
        expected += 1;
        assert_eq!(count(&reader), expected);
        // A checkpoint by the reader's connection, then more writes on a restarted WAL.
        reader.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        for i in 0..20 {
            writer.execute("INSERT INTO t (body) VALUES (?)", [format!("restarted-{i}")]).unwrap();
            expected += 1;
            assert_eq!(count(&reader), expected);
        }
        // Not closed cleanly: the WAL is recovered from the file as SQLite wrote it.
        std::mem::forget(writer);
        let reopened = Connection::open(&path).unwrap();
        assert_eq!(count(&reopened), expected);
        let check: String = reopened.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        assert_eq!(reopened.query_row("SELECT count(*) FROM t WHERE body LIKE 'gone-%'", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    }
}
