//! PostgreSQL's bulk path for the pages of a fresh snapshot (a download into a database that
//! holds no row of the object): the rows only add, so they go in by binary `COPY`, which skips
//! the upsert's conflict checks and the parameter arrays. Should a key turn out to be there
//! already, the page goes the upsert's way instead, in the same transaction.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::Transaction;

/// A JSON text as a `jsonb` value of binary COPY: the format's version, then the text, which
/// the server parses as it parses a cast from text.
#[derive(Debug)]
pub(crate) struct JsonbText<'a>(pub(crate) &'a str);

impl ToSql for JsonbText<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

/// Copies rows into `target` (a table and its column list, quoted) whose columns have `types`,
/// each row written by `write_rows`, inside a savepoint of `tx`. Answers how many rows went in,
/// or `None` when one of them was in the table already (nothing of the copy is kept then).
pub(crate) fn copy_rows(
    tx: &mut Transaction<'_>,
    target: &str,
    types: &[Type],
    write_rows: impl FnOnce(&mut BinaryCopyInWriter<'_>) -> Result<(), postgres::Error>,
) -> Result<Option<u64>, postgres::Error> {
    let mut savepoint = tx.transaction()?;
    let copied = (|| {
        let mut writer = BinaryCopyInWriter::new(savepoint.copy_in(&format!("COPY {target} FROM STDIN (FORMAT binary)"))?, types);
        write_rows(&mut writer)?;
        writer.finish()
    })();
    match copied {
        Ok(rows) => {
            savepoint.commit()?;
            Ok(Some(rows))
        }
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            savepoint.rollback()?;
            Ok(None)
        }
        Err(error) => Err(error),
    }
}
