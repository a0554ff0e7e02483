// pgJDBC (Debian's libpostgresql-jdbc-java) against a running TasteDB server: metadata calls
// (getTables, getColumns, getPrimaryKeys, getIndexInfo), a prepared statement with typed parameters, a batch,
// and an error's SQLSTATE. Run as a single-file program:
//   java -cp /usr/share/java/postgresql.jar tests/clients/JdbcClient.java
// with PGHOST, PGPORT, PGUSER and PGPASSWORD set. Exits non-zero on the first mismatch.

import java.sql.*;
import java.util.*;

public class JdbcClient {
    static void check(String label, Object got, Object expected) {
        if (!Objects.equals(got, expected)) {
            System.err.println(label + ": expected " + expected + ", got " + got);
            System.exit(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT") + "/tastedb";
        try (Connection conn = DriverManager.getConnection(url, System.getenv("PGUSER"), System.getenv("PGPASSWORD"))) {
            try (Statement st = conn.createStatement()) {
                st.execute("DROP TABLE IF EXISTS jdbc_items");
                st.execute("CREATE TABLE jdbc_items (item_id BIGINT PRIMARY KEY, title TEXT NOT NULL, price DOUBLE PRECISION, added DATE)");
            }

            DatabaseMetaData meta = conn.getMetaData();
            check("product name", meta.getDatabaseProductName(), "PostgreSQL");
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "jdbc%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            check("getTables", tables, List.of("jdbc_items"));
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "jdbc_items", null)) {
                while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("IS_NULLABLE"));
            }
            check("getColumns", columns, List.of("item_id:NO", "title:NO", "price:YES", "added:YES"));
            List<String> keys = new ArrayList<>();
            try (ResultSet rs = meta.getPrimaryKeys(null, "public", "jdbc_items")) {
                while (rs.next()) keys.add(rs.getString("COLUMN_NAME") + ":" + rs.getShort("KEY_SEQ") + ":" + rs.getString("PK_NAME"));
            }
            check("getPrimaryKeys", keys, List.of("item_id:1:jdbc_items_pkey"));
            List<String> indexes = new ArrayList<>();
            try (ResultSet rs = meta.getIndexInfo(null, "public", "jdbc_items", false, false)) {
                while (rs.next()) indexes.add(rs.getString("INDEX_NAME") + ":" + rs.getString("COLUMN_NAME") + ":" + rs.getBoolean("NON_UNIQUE") + ":" + rs.getShort("ORDINAL_POSITION"));
            }
            check("getIndexInfo", indexes, List.of("jdbc_items_pkey:item_id:false:1"));

            try (PreparedStatement insert = conn.prepareStatement("INSERT INTO jdbc_items VALUES (?, ?, ?, ?)")) {
                for (int i = 1; i <= 5; i++) {
                    insert.setLong(1, i);
                    insert.setString(2, "item " + i);
                    insert.setDouble(3, i * 2.5);
                    insert.setDate(4, java.sql.Date.valueOf("2024-01-0" + i));
                    insert.addBatch();
                }
                int total = Arrays.stream(insert.executeBatch()).sum();
                check("batch insert count", total, 5);
            }
            // prepared more than prepareThreshold (5) times, so pgJDBC switches to a named
            // server-side statement
            try (PreparedStatement select = conn.prepareStatement("SELECT title, price, added FROM jdbc_items WHERE item_id = ?")) {
                for (int round = 0; round < 8; round++) {
                    long id = round % 5 + 1;
                    select.setLong(1, id);
                    try (ResultSet rs = select.executeQuery()) {
                        check("row found", rs.next(), true);
                        check("title", rs.getString(1), "item " + id);
                        check("price", rs.getDouble(2), id * 2.5);
                        check("added", rs.getDate(3).toString(), "2024-01-0" + id);
                        check("one row", rs.next(), false);
                    }
                }
                select.setInt(1, 3); // an INT4 parameter for a BIGINT column
                try (ResultSet rs = select.executeQuery()) {
                    check("int parameter finds a row", rs.next(), true);
                }
            }

            try (Statement st = conn.createStatement()) {
                st.execute("INSERT INTO jdbc_items VALUES (1, 'again', NULL, NULL)");
                check("duplicate key accepted", true, false);
            } catch (SQLException e) {
                check("duplicate key SQLSTATE", e.getSQLState(), "23505");
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_items")) {
                rs.next();
                check("count after the error", rs.getLong(1), 5L);
            }
        }
        System.out.println("pgJDBC: all checks passed");
    }
}
