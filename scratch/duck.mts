const { DuckDBInstance } = await import('@duckdb/node-api');
const db = await DuckDBInstance.create(':memory:'); const c = await db.connect();
for (const q of ["select extension_name, installed, loaded from duckdb_extensions() where extension_name like '%arrow%' or extension_name like 'nanoarrow'", "LOAD arrow", "INSTALL nanoarrow FROM community"]) {
  try { const r = await c.runAndReadAll(q); console.log(q, JSON.stringify(r.getRowsJson())); } catch (e) { console.log(q, 'ERR', (e as Error).message.split('\n')[0]); }
}
