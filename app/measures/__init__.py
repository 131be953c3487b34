"""Follow-up indicators: Measures evaluated over patients' records, MeasureReports, a region's report, demo cohorts.

The Measures are data (`plandefinitions/Measure-*.json`): their population criteria are FHIRPath over the
case features of `Library/lbp-case-features`, the same features the rules read (docs/measures.md).
`engine` evaluates them (pure Python, no Flask); `store_cohort` reads the records from the store;
`report` renders the indicator table and page; `demo` writes a deterministic pathway cohort.
"""
