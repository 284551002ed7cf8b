//! What the state machine adapter does with snapshot files: build one from the machine,
//! install a received one, and restore the kept one on open. Blocking (they stream whole
//! files); the adapter runs them on the blocking pool with its lock held, except on open.
//!
//! Memory stays bounded: data goes between the machine and a file through a buffer of
//! [`DATA_BUFFER`] bytes, and a received plain snapshot becomes the kept one by a hard link.
//!
//! An install is safe against a crash at any point: the received file is made durable with
//! its meta before the machine changes anything, and is removed only once the snapshot is
//! kept. A crash in between leaves it there, and the next open installs it again (a
//! machine's install must be redoable: a service store marks itself mid-install and starts
//! over). After a restart the state is the old snapshot's (the received one was not durable
//! yet) or the new one, never a mix.

use std::fs::File;
use std::io::{BufReader, Cursor, Seek, SeekFrom};

use super::partition_snapshot::PartitionSnapshot;
use super::partition_snapshot_files as partition_files;
use super::snapshot_files::{self, BoxError, DATA_BUFFER, StoredSnapshot};
use super::state_machine::Inner;
use super::types::SnapshotMeta;

impl Inner {
    /// The meta of a snapshot of the machine as applied now.
    pub(super) fn snapshot_meta(&self) -> SnapshotMeta {
        let snapshot_id = match self.last_applied {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => "empty".to_string(),
        };
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        }
    }

    /// Streams the machine's state into a new kept snapshot; returns its data (what
    /// `build_snapshot` hands openraft).
    pub(super) fn build(&mut self, meta: SnapshotMeta) -> Result<File, BoxError> {
        // A partition's snapshot starts with the offset where its log continues (see
        // `partition_snapshot`). -1 when the last applied entry is not in this log (only
        // openraft's storage suite applies entries the log never held): a replica
        // installing such a snapshot refuses to guess where its log continues.
        let next_offset = self.partition.as_ref().map(|partition| {
            match self.last_applied {
                Some(last) => partition.offset_after(last.index),
                None => Some(partition.log().log_start_offset()),
            }
            .unwrap_or(-1)
        });
        let machine = &self.machine;
        let (stored, file) = StoredSnapshot::create(&self.dir, meta, &mut |out| {
            if let Some(next_offset) = next_offset {
                out.write_all(&next_offset.to_be_bytes())?;
            }
            machine.snapshot_to(out)
        })?;
        self.current_snapshot = Some(stored);
        Ok(file)
    }

    /// Installs the received snapshot `meta` whose data is `file` and keeps it.
    pub(super) fn install(&mut self, meta: &SnapshotMeta, file: File) -> Result<(), BoxError> {
        let stored = match self.partition.clone() {
            Some(partition) => {
                let installed = partition_files::install_file(&self.dir, meta, file, &partition)?;
                self.machine
                    .restore_from(&mut Cursor::new(&installed.state))?;
                let kept = partition_files::kept_data(&installed);
                let (stored, _) = StoredSnapshot::create(&self.dir, meta.clone(), &mut |out| {
                    Ok(out.write_all(&kept)?)
                })?;
                stored
            }
            None => self.install_plain(meta, file)?,
        };
        snapshot_files::clear_received(&self.dir)?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.current_snapshot = Some(stored);
        Ok(())
    }

    fn install_plain(
        &mut self,
        meta: &SnapshotMeta,
        mut file: File,
    ) -> Result<StoredSnapshot, BoxError> {
        // Durable before the machine changes anything: from here a crash is redone on open.
        snapshot_files::keep_received(&self.dir, &file, meta)?;
        file.seek(SeekFrom::Start(0))?;
        let restored = self
            .machine
            .restore_from(&mut BufReader::with_capacity(DATA_BUFFER, &mut file));
        if let Err(error) = restored {
            // The machine refused the snapshot, leaving its state as it was or refusing to
            // go on (see the trait): a restart opens the snapshot kept before, and the
            // leader sends this one again, rather than every open failing on it.
            snapshot_files::clear_received(&self.dir)?;
            return Err(error);
        }
        StoredSnapshot::adopt(&self.dir, meta.clone(), &mut file)
    }

    /// On open: restores the machine from the kept snapshot, or installs a received one a
    /// crash cut short (it is newer). A partition's log is made to continue where the
    /// snapshot says.
    pub(super) fn recover(&mut self) -> Result<(), BoxError> {
        let stored = StoredSnapshot::read(&self.dir)?;
        snapshot_files::remove_stale(&self.dir, stored.as_ref())?;
        if let Some((meta, file)) = snapshot_files::kept_received(&self.dir)?
            && meta.last_log_id > stored.as_ref().and_then(|s| s.meta.last_log_id)
        {
            return self.install(&meta, file);
        }
        snapshot_files::clear_received(&self.dir)?;
        let Some(stored) = stored else {
            return Ok(());
        };
        let mut data = stored.data_file(&self.dir)?;
        match &self.partition {
            Some(partition) => {
                let kept = PartitionSnapshot::read(&mut data)?;
                if let Some(last) = stored.meta.last_log_id {
                    partition.install_snapshot_log(last, kept.next_offset, None)?;
                }
                self.machine.restore_from(&mut Cursor::new(&kept.state))?;
            }
            None => self
                .machine
                .restore_from(&mut BufReader::with_capacity(DATA_BUFFER, data))?,
        }
        self.last_applied = stored.meta.last_log_id;
        self.last_membership = stored.meta.last_membership.clone();
        self.current_snapshot = Some(stored);
        Ok(())
    }
}
