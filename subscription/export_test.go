package subscription

// OpenParked opens ParkedBucket as an ordered group's member does.
var OpenParked = openParked
