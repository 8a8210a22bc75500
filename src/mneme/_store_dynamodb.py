"""The import path mneme 1.0 documents; the store lives in ``mneme.stores.dynamodb``."""

from mneme.stores.dynamodb import DynamoDBStore as DynamoDBStore
