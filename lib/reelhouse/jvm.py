"""The JVM dependencies: the jars ``make install`` resolved with Maven, and their coordinates.

``jvm/pom.xml`` is the one place versions are declared. ``make install`` runs Maven once and
copies two sets of jars under ``jvm/target/``: ``broker/`` (Apache Kafka, for the local stack)
and ``spark/`` (Spark's ``kafka`` source and delta-spark, beyond what the pyspark wheel ships).
Everything that starts a JVM asks this module: the SparkSession factory, ``spark-submit`` in
the Makefile (``python -m reelhouse.jvm submit-args``), the Airflow operator and the stack.

``spark.jars: packages`` in config swaps the resolved jars for Spark's own resolution of the
same coordinates (``spark.jars.packages``), for a cluster whose driver reaches a Maven repository.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

from reelhouse.errors import PrerequisiteError

PROJECT_DIR = Path(__file__).resolve().parents[2]
POM = PROJECT_DIR / "jvm" / "pom.xml"
JARS_DIR = PROJECT_DIR / "jvm" / "target"
BROKER_JARS = JARS_DIR / "broker"
SPARK_JARS = JARS_DIR / "spark"

# What every session needs so that `format("delta")`, DeltaTable and Delta's SQL commands work.
DELTA_SESSION_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

_MISSING = "run `make install` (it resolves them with Maven from jvm/pom.xml; needs `mvn`, e.g. apt-get install maven)"


@cache
def pom_properties() -> dict[str, str]:
    """The ``<properties>`` of ``jvm/pom.xml``: the versions of every JVM dependency."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(POM).getroot()
    properties = root.find("m:properties", namespace)
    if properties is None:
        raise PrerequisiteError(f"{POM} has no <properties>")
    return {child.tag.split("}", 1)[1]: (child.text or "").strip() for child in properties}


def spark_packages() -> list[str]:
    """Maven coordinates of Spark's Kafka source and delta-spark, as ``spark.jars.packages`` takes them."""
    p = pom_properties()
    scala = p["scala.binary.version"]
    return [
        f"org.apache.spark:spark-sql-kafka-0-10_{scala}:{p['spark.version']}",
        f"io.delta:delta-spark_{p['delta.spark.minor']}_{scala}:{p['delta.version']}",
    ]


def _jars(folder: Path, what: str) -> list[Path]:
    jars = sorted(folder.glob("*.jar"))
    if not jars:
        raise PrerequisiteError(f"the {what} jars are missing from {folder}: {_MISSING}")
    return jars


def spark_jars() -> list[Path]:
    """The resolved jars every Spark driver and executor needs (Kafka source, delta-spark)."""
    return _jars(SPARK_JARS, "Spark (Kafka source, delta-spark)")


def broker_classpath() -> str:
    """The classpath of the local Apache Kafka broker."""
    return ":".join(str(j) for j in _jars(BROKER_JARS, "Apache Kafka broker"))


def spark_dependency_conf(mode: str = "resolved") -> dict[str, str]:
    """Spark settings that put the JVM dependencies on a session started from Python.

    ``resolved``: the jars under ``jvm/target/spark``; ``packages``: Spark resolves the coordinates.
    """
    if mode == "packages":
        return {"spark.jars.packages": ",".join(spark_packages())}
    return {"spark.jars": ",".join(str(j) for j in spark_jars())}


def spark_submit_args(mode: str = "resolved") -> list[str]:
    """The ``spark-submit`` options that do the same (``--jars`` or ``--packages``)."""
    if mode == "packages":
        return ["--packages", ",".join(spark_packages())]
    return ["--jars", ",".join(str(j) for j in spark_jars())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reelhouse.jvm", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["submit-args", "packages", "broker-classpath"])
    parser.add_argument("--config", default=None, help="YAML config; its spark.jars picks --jars or --packages")
    args = parser.parse_args(argv)
    try:
        if args.what == "submit-args":
            mode = "resolved"
            if args.config:
                from reelhouse.config import load_config

                mode = load_config(args.config).spark.jars
            print(" ".join(spark_submit_args(mode)))
        elif args.what == "packages":
            print(",".join(spark_packages()))
        else:
            print(broker_classpath())
    except PrerequisiteError as e:
        print(f"reelhouse: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
