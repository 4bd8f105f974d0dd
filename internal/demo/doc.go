// Package demo is the demo domain: an online shop's orders. It generates realistic order
// streams (OrderPlaced, PaymentCaptured, OrderShipped or OrderCancelled; schemas in
// schemas/avro) and keeps the demo.orders read model.
package demo
